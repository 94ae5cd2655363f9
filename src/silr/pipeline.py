"""Texts and files around the refinement loop: read inputs, featurize, refine, write a run folder, predict.

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
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from silr import __version__
from silr.io import InputError, clean_texts, parse_binary_labels, parse_scores, read_table, write_table
from silr.refine import SelfIterativeRefiner

__all__ = [
    "RefineInputs",
    "load_refine_inputs",
    "refine_texts",
    "RefineResult",
    "write_run",
    "prepare_out_dir",
    "predict_texts",
    "load_model",
    "evaluate_run",
]


@dataclass
class RefineInputs:
    """Corpus texts with their round-0 labels, and the small labeled sample."""

    texts: list[str]
    pseudo: np.ndarray
    labeled_texts: list[str]
    labeled_y: np.ndarray
    labeled_pseudo: np.ndarray
    notes: list[str] = field(default_factory=list)
    corpus_path: str | None = None
    labeled_path: str | None = None
    llm_score: np.ndarray | None = None
    labeled_llm_score: np.ndarray | None = None


def _pseudo_from_column(df, path, col, threshold) -> np.ndarray:
    if threshold is None:
        vals = df[col]
        try:
            return parse_binary_labels(vals, what=f"corpus file '{path}'", column=col).astype(np.int8)
        except InputError as e:
            raise InputError(
                f"{e}. If '{col}' holds real-valued scores, pass --threshold to turn them into 0/1 labels"
            ) from None
    scores = parse_scores(df[col], what=f"corpus file '{path}'", column=col)
    return (scores > threshold).astype(np.int8)


def load_refine_inputs(
    corpus: str | os.PathLike,
    labeled: str | os.PathLike,
    *,
    pseudo_col: str,
    text_col: str = "text",
    label_col: str = "label",
    threshold: float | None = None,
    score_col: str | None = None,
) -> RefineInputs:
    """Read and validate the corpus and the labeled sample (CSV, JSONL or Parquet).

    The labeled sample's round-0 labels come from its own ``pseudo_col`` column when it has one,
    otherwise from the corpus rows with the same text. ``score_col`` (optional) names the LLM's real-valued
    score (``llm_score`` from ``silr annotate``), looked up the same way; the final selection then stacks it
    with the refined classifier's score. Every problem raises :class:`InputError` naming
    the file, column or rows.
    """
    cdf = read_table(corpus, required=[text_col, pseudo_col] + ([score_col] if score_col else []), what="corpus")
    texts = clean_texts(cdf[text_col], what=f"corpus file '{corpus}'", column=text_col)
    pseudo = _pseudo_from_column(cdf, corpus, pseudo_col, threshold)
    notes = []
    n_dup = len(texts) - len(set(texts))
    if n_dup:
        notes.append(f"corpus has {n_dup} duplicate texts; each row is kept and labeled")
    if pseudo.min() == pseudo.max():
        raise InputError(
            f"corpus file '{corpus}': every pseudo-label in column '{pseudo_col}' is {int(pseudo[0])}; "
            "the method needs both a pseudo-positive and a pseudo-negative set"
        )
    ldf = read_table(labeled, required=[text_col, label_col], what="labeled sample")
    ltexts = clean_texts(ldf[text_col], what=f"labeled file '{labeled}'", column=text_col)
    ly = parse_binary_labels(ldf[label_col], what=f"labeled file '{labeled}'", column=label_col).astype(np.int8)
    if ly.min() == ly.max():
        raise InputError(
            f"labeled file '{labeled}': the labeled sample has one class only (every gold label in "
            f"column '{label_col}' is {int(ly[0])}); the class priors need labeled positives and negatives"
        )
    score = lscore = None
    if score_col:
        score = parse_scores(cdf[score_col], what=f"corpus file '{corpus}'", column=score_col)
    if pseudo_col in ldf.columns:
        lp = _pseudo_from_column(ldf, labeled, pseudo_col, threshold)
        if score_col:
            if score_col not in ldf.columns:
                raise InputError(f"labeled file '{labeled}' has '{pseudo_col}' but no score column '{score_col}'")
            lscore = parse_scores(ldf[score_col], what=f"labeled file '{labeled}'", column=score_col)
    else:
        first = {}
        first_score = {}
        for i, (t, s) in enumerate(zip(texts, pseudo)):
            first.setdefault(t, s)
            if score is not None:
                first_score.setdefault(t, score[i])
        missing = [i for i, t in enumerate(ltexts) if t not in first]
        if missing:
            rows = ", ".join(str(i + 2) for i in missing[:5])
            raise InputError(
                f"labeled file '{labeled}': {len(missing)} of {len(ltexts)} rows (lines {rows}"
                f"{' ...' if len(missing) > 5 else ''}) have no pseudo-label: their text is not in the corpus "
                f"and the file has no '{pseudo_col}' column. Annotate the labeled rows too, or label rows "
                "sampled from the corpus"
            )
        lp = np.array([first[t] for t in ltexts], dtype=np.int8)
        if score is not None:
            lscore = np.array([first_score[t] for t in ltexts], dtype=np.float64)
        notes.append(f"labeled rows' pseudo-labels taken from the corpus by text ({len(ltexts)} rows)")
    return RefineInputs(texts, pseudo, ltexts, ly, lp, notes, str(corpus), str(labeled), score, lscore)


@dataclass
class RefineResult:
    refiner: SelfIterativeRefiner
    backbone: object
    inputs: RefineInputs
    labels: pd.DataFrame
    summary: dict
    seconds: float


def refine_texts(
    inputs: RefineInputs,
    *,
    backbone="minilm",
    rounds: int = 5,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    on_round: Callable[[dict], None] | None = None,
    **refiner_params,
) -> RefineResult:
    """The one-call function over texts: featurize with ``backbone``, refine, and collect the results.

    Examples
    --------
    >>> inputs = RefineInputs(texts, llm_labels, labeled_texts, gold, labeled_llm_labels)  # doctest: +SKIP
    >>> result = refine_texts(inputs, backbone="minilm", rounds=5)                         # doctest: +SKIP
    >>> result.labels["final"]                                                              # doctest: +SKIP
    """
    from silr.backbones import Backbone, get_backbone

    t0 = time.perf_counter()
    bb = backbone if isinstance(backbone, Backbone) else get_backbone(backbone, cache_dir=cache_dir, progress=progress)
    bb.fit(inputs.texts)
    X = bb.transform(inputs.texts)
    X_lab = bb.transform(inputs.labeled_texts)
    # a backbone with a learner of its own (LoRA fine-tuning) trains each round; the others feed the head
    factory = bb.new_learner if type(bb).new_learner is not Backbone.new_learner else None
    refiner = SelfIterativeRefiner(rounds=rounds, seed=seed, learner_factory=factory, **refiner_params)
    refiner.fit(
        X, inputs.pseudo, X_labeled=X_lab, y_labeled=inputs.labeled_y, pseudo_labeled=inputs.labeled_pseudo,
        on_round=on_round, llm_score=inputs.llm_score, llm_score_labeled=inputs.labeled_llm_score,
    )
    cols = {f"round_{r}": refiner.labels_[r].astype(int) for r in range(refiner.n_rounds_ + 1)}
    cols["final"] = refiner.transduction_.astype(int)
    if refiner.predict_round_ == 0 and refiner.final_source_ != "probe":
        # every refinement round was rejected and round 0's labels were handed back: there is no classifier to
        # score the corpus with, so the score is the handed-back label as +1/-1 (never NaN)
        cols["score"] = np.where(refiner.transduction_ == 1, 1.0, -1.0)
        inputs.notes.append("no refinement round was kept: the score column is the handed-back label as +1/-1, "
                            "and the saved model has no classifier for `silr predict`")
    else:
        cols["score"] = refiner.decision_function(X, llm_score=inputs.llm_score).astype(float)
    labels = pd.DataFrame(cols)
    summary = {
        "silr_version": __version__,
        "backbone": bb.spec(),
        "n_corpus": len(inputs.texts),
        "n_labeled": len(inputs.labeled_texts),
        "inputs": {"corpus": inputs.corpus_path, "labeled": inputs.labeled_path},
        "notes": inputs.notes,
        **refiner.summary(),
    }
    summary["seconds"] = time.perf_counter() - t0
    return RefineResult(refiner, bb, inputs, labels, summary, summary["seconds"])


def prepare_out_dir(out_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse a non-empty output folder unless ``overwrite``; return the path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output folder '{out}' is not empty; pass --overwrite to replace it")
    return out


def write_run(result: RefineResult, out_dir: str | os.PathLike, *, report: bool = True) -> Path:
    """Write the run folder atomically: built in a sibling temp folder, then moved into place."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write_table(result.labels, tmp / "labels.csv")
        (tmp / "rounds.json").write_text(json.dumps(result.summary, indent=2, default=_json_default))
        model = tmp / "model"
        result.refiner.save(model)
        result.backbone.save(model)
        (model / "backbone.json").write_text(json.dumps(result.backbone.spec(), indent=2))
        if report:
            from silr.report import write_report

            write_report(tmp, rounds=result.summary, labels=result.labels)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


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
    X = bb.transform(list(texts))
    if llm_score is None and getattr(refiner, "final_source_", "") == "stack" and hasattr(bb, "llm_scores"):
        llm_score = bb.llm_scores(list(texts))  # the backbone is the labeling LLM: it gives its own evidence
    score = refiner.decision_function(X, llm_score=llm_score)
    proba = refiner.predict_proba(X, llm_score=llm_score)[:, 1]
    return pd.DataFrame({"score": score, "label": (score > 0).astype(int), "proba": proba})


def evaluate_run(
    run_dir: str | os.PathLike,
    gold: str | os.PathLike,
    *,
    label_col: str = "label",
    text_col: str = "text",
    test: str | os.PathLike | None = None,
) -> dict:
    """Score a finished run against held-out gold labels (a separate step: the run never saw them).

    ``gold`` has one row per corpus row in the same order (a ``label`` column), or is matched by text when
    both files have ``text_col``. ``test`` optionally names a held-out test file (text, label) scored with
    the saved classifier. The evaluation is added to ``rounds.json`` and the report is rewritten.
    """
    d = Path(run_dir)
    if not (d / "labels.csv").exists() or not (d / "rounds.json").exists():
        raise InputError(f"'{run_dir}' is not a finished silr run folder (labels.csv and rounds.json expected)")
    labels = pd.read_csv(d / "labels.csv")
    summary = json.loads((d / "rounds.json").read_text())
    gdf = read_table(gold, required=[label_col], what="gold file")
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
        tdf = read_table(test, required=[text_col, label_col], what="test file")
        ttexts = clean_texts(tdf[text_col], what=f"test file '{test}'", column=text_col)
        ty = parse_binary_labels(tdf[label_col], what=f"test file '{test}'", column=label_col)
        pred = predict_texts(d, ttexts, progress=False)["label"].to_numpy()
        ev["test"] = {"file": str(test), "n": len(ttexts), "accuracy": float(np.mean(pred == ty))}
    summary["evaluation"] = ev
    from silr.io import atomic_write_text

    atomic_write_text(d / "rounds.json", json.dumps(summary, indent=2, default=_json_default))
    try:
        from silr.report import write_report

        gold_full = np.where(known, y, np.nan)
        write_report(d, rounds=summary, labels=labels, gold=gold_full)
    except Exception as e:  # the evaluation itself is saved; a report failure must not hide it
        warnings.warn(f"report not rewritten: {e}")
        print(f"warning: report not rewritten: {e}", file=sys.stderr)
    return ev
