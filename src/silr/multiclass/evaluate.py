"""The K-class evaluation step (``silr evaluate`` on a K-class run folder): the run's labels per round against
held-out gold and, with a test file, the saved model's predictions; read only after the run is written.
:mod:`silr.multiclass.files` re-exports both functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from silr.io import InputError

__all__ = ["is_kclass_run", "evaluate_kclass"]


def is_kclass_run(run_dir: str | Path) -> bool:
    """A run folder written by :func:`refine_kclass` (its rounds.json has K > 2 classes and T per round)."""
    try:
        s = json.loads((Path(run_dir) / "rounds.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and len(s.get("classes") or ()) > 2 and any("T" in r for r in s.get("rounds", ()))


def evaluate_kclass(run_dir: str | Path, gold: str | Path, *, label_col: str = "label", test: str | Path | None = None,
                    text_col: str = "text", test_score_col: str | None = None) -> dict:
    """The evaluation step: the run's labels per round against held-out gold (corpus order) and, with ``test``
    (a file of texts and gold labels), the saved model's predictions on it; writes ``evaluation.json`` into the run
    folder and returns it. A hand-back that reads the LLM's evidence (its calibrated labels, the stack) needs the
    test rows' evidence, ``test_score_col`` (as ``silr predict --score-col``: a column of LLM labels or the prefix
    of per-class score columns); without it the refined classifier (or the probe) scores them, and
    ``test.scored_by`` says which model was scored."""
    from silr.io import atomic_write_text, read_table
    from silr.multiclass.files import class_names, kept_rows
    from silr.multiclass.report import evaluation

    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "rounds.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"'{run_dir}' is not a finished K-class run folder (rounds.json: {e})") from e
    res = read_table(run_dir / "labels.csv", required=["label", "llm_label"], what="run labels")
    g = read_table(gold, required=[label_col], what="gold")
    left = (summary.get("rows_left_out") or {}).get("rows") or []
    if left and len(g) == len(res) + len(left):  # gold of every corpus row: drop the rows the run left out
        g = g[kept_rows(summary, len(g))].reset_index(drop=True)
    if len(g) != len(res):
        raise InputError(f"gold file '{gold}' has {len(g)} rows; the run has {len(res)} corpus rows (same order expected"
                         + (f"; {len(left)} corpus rows with no LLM label were left out" if left else "") + ")")
    tcol = res.columns[0]  # labels.csv's first column: the corpus texts
    if tcol in g.columns:  # a gold file with the texts: in another order, every figure would be silently wrong
        a, b = res[tcol].astype(str).str.strip().to_numpy(), g[tcol].astype(str).str.strip().to_numpy()
        if (a != b).any():
            i = int(np.flatnonzero(a != b)[0])
            raise InputError(f"gold file '{gold}': row {i + 2} has the text {b[i][:60]!r}, but the run's corpus row there "
                             f"is {a[i][:60]!r}: give the gold labels in corpus order")
    classes = summary["classes"]
    code = {c: i for i, c in enumerate(classes)}
    gnames = class_names(g[label_col])
    # a gold class the run does not have (code K) is a row it cannot get right: counted, not dropped as unknown
    gc = np.array([-1 if v == "" else code.get(v, len(classes)) for v in gnames])
    per = [res["llm_label"]] + [res[c] for c in res.columns if c.startswith("round_")]
    ev = evaluation(classes, [[code.get(str(v), -1) for v in L] for L in per],
                    [code.get(str(v), -1) for v in res["label"]], gc)
    other = sorted({v for v, c in zip(gnames, gc) if c == len(classes)})
    if other:
        ev["gold_classes_not_in_run"] = {v: int(np.sum(gnames == v)) for v in other}
    if "round0_calibrated" in res.columns:  # round 0 of the rounds: the LLM's argmax calibrated on the labeled rows
        m = gc >= 0
        ev["round0_calibrated_accuracy"] = float(np.mean(
            np.array([code.get(str(v), -1) for v in res["round0_calibrated"]])[m] == gc[m]))
    if test is not None:
        from silr.io import clean_texts
        from silr.run_folder import predict_texts

        if not (run_dir / "model" / "config.json").exists():
            raise InputError(f"--test needs the run's saved model; '{run_dir}' has no model/ (a run from an older silr)")
        from silr.multiclass.persist import evidence_mismatch, kclass_evidence

        t = read_table(test, required=[text_col, label_col], what="test")
        config = json.loads((run_dir / "model" / "config.json").read_text())
        tllm = None
        if test_score_col:
            tllm = kclass_evidence(t, test_score_col, classes, what=f"test file '{test}'")
            bad = evidence_mismatch(config, labels_given=test_score_col in t.columns, column=test_score_col)
            if bad:
                raise InputError(bad)
        pred = predict_texts(run_dir, clean_texts(t[text_col], what=f"test file '{test}'", column=text_col),
                             progress=False, llm_score=tllm)
        truth = class_names(t[label_col])  # as the run names its classes ('1.0' is the class '1')
        src, k = config.get("final_source"), int(config.get("predict_round", 0))
        if src in ("llm", "stack") and tllm is None:  # the hand-back reads the LLM's evidence the test rows lack
            by = f"the refined classifier (round {k}), not the handed-back {src}" if k else \
                f"the probe (logistic regression on the labeled rows), not the handed-back {src}"
        else:
            by = f"the handed-back {src}"
        ev["test"] = {"accuracy": float(np.mean(pred["label"].astype(str).to_numpy() == truth)), "n": int(len(t)),
                      "scored_by": by, "score_col": test_score_col}
    atomic_write_text(run_dir / "evaluation.json", json.dumps(ev, indent=1))
    return ev
