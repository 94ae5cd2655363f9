"""Thresholds that turn LLM scores into 0/1 pseudo-labels (positive iff ``score > threshold``).

* ``"accuracy"``: the threshold that maximises accuracy on the labeled sample (its rows' own scores); among
  equally good thresholds the middle one is taken.  Default when a labeled sample is given.
* ``"prior"``: the corpus is cut so that its positive rate matches the labeled sample's positive rate
  (a quantile of the corpus scores).
* a number: fixed threshold.  Default (0.0, with a warning) without a labeled sample: base LLMs are rarely
  calibrated at 0.

Abstained items (NaN scores) are ignored throughout.  Every choice returns ``(threshold, record)`` where the
record says the method, the value and the labeled accuracy at it (``None`` without labels).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("accuracy", "prior")


def _clean(scores: Any) -> np.ndarray:
    a = np.asarray([np.nan if s is None else s for s in np.ravel(np.asarray(scores, dtype=object))], dtype=float)
    return a


def auc(scores: Any, labels: Any) -> float | None:
    """Rank AUC (ties count 1/2); None when a class is missing."""
    s, y = _clean(scores), np.asarray(labels, dtype=float)
    ok = ~np.isnan(s) & ~np.isnan(y)
    s, y = s[ok], y[ok].astype(int)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    if n1 == 0 or n0 == 0:
        return None
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def accuracy_at(threshold: float, scores: Any, labels: Any) -> float | None:
    s, y = _clean(scores), np.asarray(labels, dtype=float)
    ok = ~np.isnan(s) & ~np.isnan(y)
    if not ok.any():
        return None
    return float(np.mean((s[ok] > threshold).astype(int) == y[ok].astype(int)))


def best_accuracy_threshold(scores: Any, labels: Any) -> tuple[float, float]:
    """(threshold, accuracy) maximising labeled accuracy of ``score > threshold``."""
    s, y = _clean(scores), np.asarray(labels, dtype=float)
    ok = ~np.isnan(s) & ~np.isnan(y)
    s, y = s[ok], y[ok].astype(int)
    if len(s) == 0:
        raise ValueError("no scored labeled rows to fit a threshold on")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    # vectorised: accuracy for each candidate
    pred = s[None, :] > cands[:, None]
    acc = (pred == y[None, :].astype(bool)).mean(axis=1)
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    # the best candidates may form several runs; take the middle of the longest run, else the middle one
    runs, cur = [], [best[0]]
    for b in best[1:]:
        if b == cur[-1] + 1:
            cur.append(b)
        else:
            runs.append(cur)
            cur = [b]
    runs.append(cur)
    run = max(runs, key=len)
    if len(run) > 1:
        lo, hi = cands[run[0]], cands[run[-1]]
        thr = float((lo + hi) / 2)
    else:
        thr = float(cands[run[0]])
    return thr, float(accuracy_at(thr, s, y))


def prior_threshold(corpus_scores: Any, positive_rate: float) -> float:
    """Threshold putting a ``positive_rate`` share of the (non-abstained) corpus scores above it."""
    s = np.sort(_clean(corpus_scores))[::-1]
    s = s[~np.isnan(s)]
    if len(s) == 0:
        raise ValueError("no corpus scores to place a threshold in")
    k = int(round(positive_rate * len(s)))
    if k <= 0:
        return float(s[0] + 1.0)
    if k >= len(s):
        return float(s[-1] - 1.0)
    return float((s[k - 1] + s[k]) / 2)


def fitted_on_labeled(record: dict | None) -> bool:
    """Whether a threshold record (:func:`choose_threshold`'s, kept in ``annotation.json``) cut the scores where the
    labeled rows' own gold put it ('accuracy'); a fixed number or 'prior' did not (the refiner then judges the
    LLM's labels on those rows as given, not out of fold)."""
    return (record or {}).get("method") == "accuracy"


def choose_threshold(method: str | float | None, corpus_scores: Any, labeled_scores: Any = None,
                     labeled_labels: Any = None) -> tuple[float, dict[str, Any]]:
    """Pick the threshold; returns ``(threshold, record)``.

    ``method``: ``"accuracy"``, ``"prior"``, a float (or a string holding one), or ``None`` for the default
    (``"accuracy"`` with a labeled sample, else ``0.0`` with a warning).
    """
    have_labels = labeled_scores is not None and labeled_labels is not None and len(np.asarray(labeled_labels)) > 0
    ls = _clean(labeled_scores) if have_labels else None
    ly = np.asarray(labeled_labels, dtype=float) if have_labels else None
    if have_labels and np.all(np.isnan(ls)):
        log.warning("every labeled row was abstained on: the labeled sample cannot calibrate the threshold")
    method_in = method
    if method is None:
        method = "accuracy" if have_labels and not np.all(np.isnan(ls)) else None
        if method is None:
            log.warning("no labeled sample: using the fixed threshold 0.0, which is rarely right for a base LLM; "
                        "pass a labeled sample (--labeled) or --threshold prior/FLOAT")
            method = 0.0
    if isinstance(method, str) and method.strip().lower() not in METHODS:
        try:
            method = float(method)
        except ValueError:
            raise ValueError(f"threshold must be 'accuracy', 'prior' or a number, got {method_in!r}") from None
    rec: dict[str, Any] = {}
    if isinstance(method, str):
        method = method.strip().lower()
        if not have_labels:
            raise ValueError(f"threshold '{method}' needs a labeled sample (--labeled)")
        one = np.unique(ly[~np.isnan(ls) & ~np.isnan(ly)])
        if len(one) == 1:  # the cut would fall below or above every text: no pseudo-labels worth the name
            raise ValueError(f"threshold '{method}' needs labeled rows of both classes, but every scored labeled row "
                             f"has gold label {int(one[0])}; label rows of the other class too, or pass a fixed "
                             "threshold (a number)")
        if method == "accuracy":
            thr, _ = best_accuracy_threshold(ls, ly)
        else:
            pi = float(np.nanmean(ly))
            thr = prior_threshold(corpus_scores, pi)
            rec["labeled_positive_rate"] = pi
        rec = {"method": method, "value": thr, **rec}
    else:
        thr = float(method)
        if not math.isfinite(thr):
            raise ValueError("a fixed threshold must be a finite number")
        rec = {"method": "fixed", "value": thr}
    cs = _clean(corpus_scores)
    cs = cs[~np.isnan(cs)]
    rec["labeled_accuracy"] = accuracy_at(thr, ls, ly) if have_labels else None
    rec["labeled_auc"] = auc(ls, ly) if have_labels else None
    rec["n_labeled_scored"] = int((~np.isnan(ls)).sum()) if have_labels else 0
    rec["corpus_positive_rate"] = float(np.mean(cs > thr)) if len(cs) else None
    if rec["labeled_auc"] is not None and rec["labeled_auc"] < 0.5:
        log.warning("LLM scores rank the labeled sample worse than chance (AUC %.2f): check the label words "
                    "(positive first) and the prompt", rec["labeled_auc"])
    return float(thr), rec
