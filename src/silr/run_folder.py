"""The run folder: written atomically, loaded back without pickle, used to score new texts and evaluated.

A run folder holds:

* ``labels.csv``  one row per corpus row, same order: ``round_0`` ... ``round_K``, ``final`` (0/1), ``score``;
* ``rounds.json`` per round: priors with intervals, pseudo-positive rate, losses; ``stop_reason``; selection;
* ``model/``      the refiner (``config.json`` + ``weights.safetensors``) and the backbone (``backbone.json``);
* ``report.html`` and ``plots/``.

The folder is built beside its destination and moved into place only when complete, so an interrupted
run never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pandas as pd

from silr.io import (InputError, atomic_write_text, clean_texts, json_default, parse_binary_labels, parse_scores,
                     read_table, write_table)
from silr.refine import SelfIterativeRefiner

if TYPE_CHECKING:
    from silr.texts import RefineResult

__all__ = ["prepare_out_dir", "write_run", "staged_folder", "replace_folder", "load_model", "predict_texts", "with_predictions",
           "evaluate_run"]


def prepare_out_dir(out_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse a non-empty output folder unless ``overwrite``; return the path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"output folder '{out}' is not empty; pass --overwrite to replace it")
        if not (out / "rounds.json").exists():  # --overwrite replaces a run folder, never a folder of other files
            names = sorted(p.name for p in out.iterdir())
            raise InputError(f"output folder '{out}' is not a silr run folder (no rounds.json; it holds "
                             f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): --overwrite replaces an "
                             "earlier run's folder only; choose an empty or new folder")
    return out


def write_run(result: RefineResult, out_dir: str | os.PathLike, *, report: bool = True) -> Path:
    """Write the run folder atomically: built in a sibling temp folder, then moved into place (into ``out`` when it
    exists: ``--out .``)."""
    with staged_folder(out_dir) as tmp:
        write_table(result.labels, tmp / "labels.csv")
        (tmp / "rounds.json").write_text(json.dumps(result.summary, indent=2, default=json_default))
        model = tmp / "model"
        result.refiner.save(model)
        result.backbone.save(model)
        (model / "backbone.json").write_text(json.dumps(result.backbone.spec(), indent=2))
        if report:
            from silr.report import write_report

            write_report(tmp, rounds=result.summary, labels=result.labels)
    return Path(out_dir)


@contextmanager
def staged_folder(out_dir: str | os.PathLike, keep: Sequence[str] = ()) -> Iterator[Path]:
    """A run folder built complete before it is seen: yields a temp folder beside ``out_dir`` to write into, then
    moves it into place (:func:`replace_folder`, ``keep`` as there); on any failure the temp folder is removed and
    ``out_dir`` is left as it was. Temp folders of killed runs are removed first."""
    out = Path(out_dir).resolve()  # `--out .`: the temp folder goes beside it, in the parent
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, out, keep)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(tmp: Path, out: Path, keep: Sequence[str] = ()) -> None:
    """Move the complete folder ``tmp`` (beside ``out``) into place as ``out``'s contents: an earlier run's entries
    there (``--overwrite``) go, so none of its files (an evaluation, a report) is left beside the new run's, except
    those named in ``keep`` (written into ``out`` by this same job before). ``out`` itself stays (it may be the
    working directory, ``--out .``)."""
    if not out.exists():
        tmp.rename(out)
        return
    old = tmp.with_name(tmp.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for p in list(out.iterdir()):
        if p.name not in keep:
            os.replace(p, old / p.name)
    for p in list(tmp.iterdir()):
        os.replace(p, out / p.name)
    tmp.rmdir()
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_partials(out: Path) -> None:
    """Remove temp folders that a killed run (SIGKILL, power loss) left beside ``out``."""
    for p in out.parent.glob(f".{out.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        alive = False
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                alive = True
            except (ProcessLookupError, PermissionError):
                alive = False
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def load_model(run_dir: str | os.PathLike):
    """Load ``(refiner, backbone)`` from a run folder (or its ``model/`` folder), without pickle."""
    from silr.backbones import load_backbone

    d = Path(run_dir)
    model = d / "model" if (d / "model").is_dir() else d
    if not (model / "config.json").exists() or not (model / "backbone.json").exists():
        raise InputError(f"'{run_dir}' is not a silr run folder (no model/config.json and model/backbone.json)")
    spec = json.loads((model / "backbone.json").read_text())
    bb = load_backbone(spec, model)
    refiner = SelfIterativeRefiner.load(model, learner_loader=getattr(bb, "load_learner", None))
    return refiner, bb


def predict_texts(
    run_dir: str | os.PathLike, texts: Sequence[str], *, progress: bool = True, llm_score=None
) -> pd.DataFrame:
    """Score new texts with a saved run: columns ``score`` (higher = positive), ``label`` (0/1), ``proba``.

    When the run handed back the stack of LLM and refined scores, pass the new texts' ``llm_score`` to use
    it; without it the refined classifier alone scores them, unless the backbone is the labeling LLM
    (``llm``), which then scores them itself.
    """
    refiner, bb = load_model(run_dir)
    if hasattr(bb, "progress"):
        bb.progress = progress
    # a fine-tuned learner (``silr refine --finetune``) scores the texts themselves
    X = np.asarray(list(texts), dtype=object) if getattr(refiner, "takes_texts_", False) else bb.transform(list(texts))
    if llm_score is None and getattr(refiner, "final_source_", "") == "stack" and hasattr(bb, "llm_scores"):
        llm_score = bb.llm_scores(list(texts))  # the backbone is the labeling LLM: it gives its own evidence
    if len(refiner.classes_) > 2:  # K classes: the class name and one probability column per class
        P = refiner.predict_proba(X, llm_score=llm_score)
        out = pd.DataFrame({"label": refiner.classes_[P.argmax(1)]})
        for j, c in enumerate(refiner.classes_):
            out[f"proba_{c}"] = P[:, j]
        return out
    score = refiner.decision_function(X, llm_score=llm_score)
    proba = refiner.predict_proba(X, llm_score=llm_score)[:, 1]
    return pd.DataFrame({"score": score, "label": (score > 0).astype(int), "proba": proba})


def with_predictions(df: pd.DataFrame, pred: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with ``pred``'s columns added; an input column of the same name (e.g. a test file's gold ``label``)
    is kept as ``input_<name>``, not overwritten. Returns the frame and a note per renamed column."""
    df = df.copy()
    notes = []
    for c in pred.columns:
        if c in df.columns:
            new = f"input_{c}"
            while new in df.columns or new in pred.columns:
                new = f"input_{new}"
            df = df.rename(columns={c: new})
            notes.append(f"the input's column '{c}' is kept as '{new}' (silr predict writes '{c}')")
        df[c] = pred[c].to_numpy()
    return df, notes


def evaluate_run(
    run_dir: str | os.PathLike,
    gold: str | os.PathLike,
    *,
    label_col: str = "label",
    text_col: str = "text",
    test: str | os.PathLike | None = None,
    test_score_col: str | None = None,
) -> dict:
    """Score a finished run against held-out gold labels (a separate step: the run never saw them).

    ``gold`` has one row per corpus row in the same order (a ``label`` column; rows are matched by position, not by
    text). ``test`` optionally names a held-out test file (text, label) scored with
    the saved classifier (``test_score_col``: its column of the LLM's scores or labels, the evidence a stack
    needs, as ``silr predict --score-col``). The evaluation is added to ``rounds.json`` and the report is rewritten.
    """
    d = Path(run_dir)
    if not (d / "labels.csv").exists() or not (d / "rounds.json").exists():
        raise InputError(f"'{run_dir}' is not a finished silr run folder (labels.csv and rounds.json expected)")
    labels = pd.read_csv(d / "labels.csv")
    summary = json.loads((d / "rounds.json").read_text())
    gdf = read_table(gold, required=[label_col], what="gold")
    if len(gdf) != len(labels):
        raise InputError(
            f"gold file '{gold}' has {len(gdf)} rows but the run labeled {len(labels)} corpus rows; "
            "give one gold row per corpus row, in corpus order"
        )
    y = parse_binary_labels(gdf[label_col], what=f"gold file '{gold}'", column=label_col, allow_missing=True)
    known = ~np.isnan(y.astype(float))
    y = y.astype(float)
    from sklearn.metrics import f1_score

    per_round = []
    rcols = sorted((c for c in labels.columns if c.startswith("round_")), key=lambda c: int(c.split("_")[1]))
    for c in rcols:
        pred = labels[c].to_numpy()[known]
        per_round.append(
            {
                "round": int(c.split("_")[1]),
                "accuracy": float(np.mean(pred == y[known])),
                "f1": float(f1_score(y[known].astype(int), pred.astype(int), zero_division=0)),
            }
        )
    final = labels["final"].to_numpy()[known]
    yk = y[known].astype(int)
    ev = {
        "gold": str(gold),
        "n_gold": int(known.sum()),
        "per_round": per_round,
        "final_accuracy": float(np.mean(final == yk)),
        "final_f1": float(f1_score(yk, final, zero_division=0)),
        "confusion": [
            [int(np.sum((yk == 0) & (final == 0))), int(np.sum((yk == 0) & (final == 1)))],
            [int(np.sum((yk == 1) & (final == 0))), int(np.sum((yk == 1) & (final == 1)))],
        ],
        "gain_over_round_0": float(np.mean(final == yk) - per_round[0]["accuracy"]),
    }
    if test is not None:
        tdf = read_table(test, required=[text_col, label_col] + ([test_score_col] if test_score_col else []),
                         what="test")
        ttexts = clean_texts(tdf[text_col], what=f"test file '{test}'", column=text_col)
        ty = parse_binary_labels(tdf[label_col], what=f"test file '{test}'", column=label_col)
        tllm = (parse_scores(tdf[test_score_col], what=f"test file '{test}'", column=test_score_col)
                if test_score_col else None)
        pred = predict_texts(d, ttexts, progress=False, llm_score=tllm)["label"].to_numpy()
        ev["test"] = {"file": str(test), "n": len(ttexts), "accuracy": float(np.mean(pred == ty)),
                      "score_col": test_score_col}
    summary["evaluation"] = ev
    atomic_write_text(d / "rounds.json", json.dumps(summary, indent=2, default=json_default))
    try:
        from silr.report import write_report

        gold_full = np.where(known, y, np.nan)
        write_report(d, rounds=summary, labels=labels, gold=gold_full)
    except Exception as e:  # the evaluation itself is saved; a report failure must not hide it
        warnings.warn(f"report not rewritten: {e}")
        print(f"warning: report not rewritten: {e}", file=sys.stderr)
    return ev
