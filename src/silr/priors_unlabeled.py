"""Class priors of a labeler from the corpus alone, for a user with no gold labels yet.

The estimate is the *confident joint* of confident learning (Northcutt, Jiang and Chuang, JAIR 2021): a
classifier predicts the given labels ``s`` from the features, out of fold; a row counts as truly positive
when its out-of-fold probability of ``s = 1`` reaches the average probability of the rows labeled 1 (and
likewise for 0; a row above both thresholds goes to the larger probability). The counts ``C[s, y]`` of
given label against counted true label, calibrated to the exact label counts, give::

    theta_p = P(y=1 | s=1) = C[1, 1] / C[1, :].sum()
    theta_n = P(y=1 | s=0) = C[0, 1] / C[0, :].sum()

(Jeffreys-smoothed like :mod:`silr.priors`). Intervals are percentile bootstrap intervals over the corpus
rows with the out-of-fold probabilities held fixed. This relies on the features separating the classes
better than the labels do; it is a starting point, far less reliable than 50 gold labels, and the refiner
warns when it uses it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from silr.priors import Interval, PriorEstimate, PriorEstimationError

__all__ = ["estimate_priors_unlabeled", "confident_joint"]


def confident_joint(s: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``C[s, y]`` (2 x 2) from given labels ``s`` and out-of-fold probabilities ``p = P(s=1 | x)``; ``weights``
    are row multiplicities, one row of them per bootstrap draw (then the result is ``(draws, 2, 2)``). Rows
    above neither threshold are not counted."""
    W = np.ones((1, s.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    pos = s == 1
    t1 = (W[:, pos] @ p[pos]) / np.maximum(W[:, pos].sum(1), 1e-12)
    t0 = (W[:, ~pos] @ (1 - p[~pos])) / np.maximum(W[:, ~pos].sum(1), 1e-12)
    up1, up0 = p[None, :] >= t1[:, None], (1 - p)[None, :] >= t0[:, None]
    y1 = up1 & (~up0 | (p >= 0.5)[None, :])
    y0 = up0 & (~up1 | (p < 0.5)[None, :])
    C = np.empty((W.shape[0], 2, 2))
    for i, side in enumerate((~pos, pos)):
        C[:, i, 0] = (W * (y0 & side)).sum(1)
        C[:, i, 1] = (W * (y1 & side)).sum(1)
    return C[0] if weights is None or np.ndim(weights) == 1 else C


def _thetas(C: np.ndarray):
    return (C[..., 1, 1] + 0.5) / (C[..., 1, :].sum(-1) + 1.0), (C[..., 0, 1] + 0.5) / (C[..., 0, :].sum(-1) + 1.0)


def _oof_proba(X, s: np.ndarray, seed: int, folds: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = min(folds, int(np.bincount(s, minlength=2).min()))
    if k < 2:
        raise PriorEstimationError("one given label occurs on fewer than 2 rows: no out-of-fold estimate")
    if sp.issparse(X):
        clf = LogisticRegression(C=10.0, max_iter=2000)
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    return cross_val_predict(clf, X, s, cv=cv, method="predict_proba")[:, 1]


def estimate_priors_unlabeled(
    X,
    labels,
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    folds: int = 5,
    max_rows: int = 20000,
) -> PriorEstimate:
    """Estimate ``pi, theta_p, theta_n`` of the labeling ``labels`` (0/1, one per row of ``X``) without gold.

    At most ``max_rows`` rows (a random subset) fit the out-of-fold classifier; the pseudo-positive rate is
    the exact one of the whole corpus.
    """
    s_all = np.asarray(labels).astype(np.int64)
    if s_all.ndim != 1 or s_all.size != X.shape[0]:
        raise PriorEstimationError(f"labels have shape {s_all.shape}; expected ({X.shape[0]},)")
    rho = float(np.mean(s_all)) if s_all.size else 0.0
    if not 0.0 < rho < 1.0:
        raise PriorEstimationError(
            f"pseudo-positive rate is {rho:.4f}: all labels are one class, so there are not two sets to learn from")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(s_all.size, max_rows, replace=False)) if s_all.size > max_rows else np.arange(s_all.size)
    s = s_all[rows]
    p = _oof_proba(X[rows] if rows.size < s_all.size else X, s, seed, folds)
    tp, tn = (float(v) for v in _thetas(confident_joint(s, p)))
    draws = {"theta_p": np.empty(n_bootstrap), "theta_n": np.empty(n_bootstrap)}
    chunk = max(1, 4_000_000 // max(s.size, 1))
    for a in range(0, n_bootstrap, chunk):
        m = min(chunk, n_bootstrap - a)
        idx = rng.integers(0, s.size, size=(m, s.size))
        W = np.stack([np.bincount(row, minlength=s.size) for row in idx]).astype(np.float64)
        draws["theta_p"][a : a + m], draws["theta_n"][a : a + m] = _thetas(confident_joint(s, p, W))
    draws["pi"] = rho * draws["theta_p"] + (1 - rho) * draws["theta_n"]
    draws["accuracy"] = rho * draws["theta_p"] + (1 - rho) * (1 - draws["theta_n"])
    draws["gap"] = draws["theta_p"] - draws["theta_n"]
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    intervals = {k: Interval(float(np.quantile(v, lo_q)), float(np.quantile(v, hi_q))) for k, v in draws.items()}
    return PriorEstimate(
        pi=rho * tp + (1 - rho) * tn,
        theta_p=float(tp),
        theta_n=float(tn),
        accuracy=rho * tp + (1 - rho) * (1 - tn),
        pseudo_positive_rate=rho,
        intervals=intervals,
        prob_gap_nonpositive=float(np.mean(draws["gap"] <= 0)),
        n_labeled=0,
        n_labeled_pseudo_positive=0,
        confidence=confidence,
        method="confident_joint",
    )
