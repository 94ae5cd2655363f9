"""What the report measures against gold labels: per-round accuracy, F1, the confusion matrix."""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from silr.report.format import _num

_ROUND_COL = re.compile(r"^round_(\d+)$")


def _round_columns(labels: pd.DataFrame) -> list[tuple[int, str]]:
    cols = []
    for c in labels.columns:
        m = _ROUND_COL.match(str(c))
        if m:
            cols.append((int(m.group(1)), str(c)))
    return sorted(cols)


def _as_binary(a: Any) -> np.ndarray:
    """Float array with 0/1 values and NaN for missing entries."""
    arr = pd.to_numeric(pd.Series(np.asarray(a).ravel()), errors="coerce").to_numpy(dtype=float)
    return arr


def _prepare_gold(gold: Any, n: int | None) -> np.ndarray | None:
    if gold is None:
        return None
    if isinstance(gold, (pd.Series, pd.DataFrame)):
        gold = gold.to_numpy()
    g = _as_binary(gold)
    if n is not None and len(g) != n:
        raise ValueError(f"gold has {len(g)} entries but labels.csv has {n} rows")
    ok = np.isfinite(g)
    if not np.all(np.isin(g[ok], (0.0, 1.0))):
        raise ValueError("gold labels must be 0/1 (NaN allowed for unknown rows)")
    return g


def _known(pred: Any, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The predictions and gold labels of the rows where both are known, or None when there is none."""
    p = _as_binary(pred)
    ok = np.isfinite(p) & np.isfinite(gold)
    return (p[ok], gold[ok]) if ok.any() else None


def _accuracy(pred: Any, gold: np.ndarray) -> float | None:
    known = _known(pred, gold)
    return None if known is None else float(np.mean(known[0] == known[1]))


def _f1(pred: Any, gold: np.ndarray) -> float | None:
    known = _known(pred, gold)
    if known is None:
        return None
    p, g = known
    tp = float(np.sum((p == 1) & (g == 1)))
    fp = float(np.sum((p == 1) & (g == 0)))
    fn = float(np.sum((p == 0) & (g == 1)))
    denom = 2 * tp + fp + fn
    return None if denom == 0 else 2 * tp / denom


def gold_metrics(labels: pd.DataFrame | None, g: np.ndarray | None, evaluation: Mapping, final_round: int | None):
    """``(gold accuracy per round, final accuracy, final F1, confusion matrix, where gold came from)``.

    From the ``gold`` array when one is given, else from the run's own ``evaluation`` block (if any).
    """
    gold_acc: dict[int, float] = {}
    final_gold_acc: float | None = None
    final_f1: float | None = None
    cm: np.ndarray | None = None
    gold_source = ""
    if g is not None:
        gold_source = f"against {(evaluation or {}).get('gold') or 'the gold labels given to the evaluation step'}"
        for k, col in _round_columns(labels):
            a = _accuracy(labels[col], g)
            if a is not None:
                gold_acc[k] = a
        final_col = "final" if "final" in labels.columns else None
        if final_col is None and final_round is not None and f"round_{final_round}" in labels.columns:
            final_col = f"round_{final_round}"
        if final_col is not None:
            p = _as_binary(labels[final_col])
            ok = np.isfinite(p) & np.isfinite(g)
            final_gold_acc = _accuracy(p, g)
            final_f1 = _f1(p, g)
            cm = np.array([[np.sum((g[ok] == t) & (p[ok] == q)) for q in (0, 1)] for t in (0, 1)],
                          dtype=float)
    elif evaluation:
        gold_source = f"against {evaluation.get('gold') or 'the evaluation block of rounds.json'}"
        for i, e in enumerate(evaluation.get("per_round") or []):
            if isinstance(e, Mapping) and _num(e.get("accuracy")) is not None:
                rn = _num(e.get("round"))
                gold_acc[int(rn) if rn is not None else i] = float(e["accuracy"])
        final_gold_acc = _num(evaluation.get("final_accuracy"))
        conf = evaluation.get("confusion")
        try:
            arr = np.asarray(conf, dtype=float)
            if arr.shape == (2, 2) and np.all(np.isfinite(arr)):
                cm = arr
        except (TypeError, ValueError):
            cm = None
        if final_round is not None:
            for e in evaluation.get("per_round") or []:
                if isinstance(e, Mapping) and _num(e.get("round")) == final_round:
                    final_f1 = _num(e.get("f1"))
    return gold_acc, final_gold_acc, final_f1, cm, gold_source
