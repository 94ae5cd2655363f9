"""Design-weighted, prediction-powered estimates of a labeler's priors and accuracy from a small labeled sample.

The corpus is the population: every estimand is a known multiple of a corpus total ``sum_i v_i`` whose
``v_i`` is seen only on the labeled rows (``pi``: ``v = y``; ``theta_p``: ``v = y`` on the pseudo-positive
side; the accuracy of labels ``s``: ``v = [y == s]``; the gain of round ``r`` over round 0:
``v = [y == s_r] - [y == s_0]``). The estimator is the stratified difference (regression) estimator

    T = sum_corpus C_i beta + sum_h N_h (mean_h(v) - mean_h(C) beta)

with ``C`` predictions known on every corpus row (the LLM's score and the classifier's score, turned into a
guess of ``v``; :func:`prediction_covariates`) and ``beta`` chosen to minimise the estimated variance. This is
prediction-powered inference with power tuning (PPI++, Angelopoulos et al. 2023) written for a finite corpus
and a stratified sample: ``beta = 0`` gives the plain design-weighted (Horvitz-Thompson / stratified)
estimator, and a useless prediction costs nothing but a degree of freedom. It is unbiased under the design
for a fixed ``beta`` (and consistent with ``beta`` fitted). Its variance is the stratified one with the finite
population correction ``1 - n_h / N_h``; intervals are ``T +- t_df se`` with ``df = n - H - p``.
A uniform random sample is the one-stratum case, post-stratified by the labeler's sides.

``ppi-python`` (``ppi_py.ppi_mean_ci``) assumes an i.i.d. labeled sample independent of an i.i.d. unlabeled one;
it has no strata or finite-population correction, so the estimator is written here from the formulas; the
benchmark (benchmarks/sampling_sim.py) checks it against ``ppi_py`` on uniform samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from silr.sampling.design import SamplingDesign, uniform_design

__all__ = ["Estimate", "total_estimate", "domain_mean", "prediction_covariates", "accuracy_covariates",
           "round_estimates", "gain_estimate"]


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    se: float
    df: int

    @property
    def width(self) -> float:
        return self.high - self.low


def _collapse(design: SamplingDesign, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strata of the corpus, N_h and n_h; post-strata of a uniform sample with fewer than two labeled rows are
    merged into one (a variance needs two rows)."""
    strata = design.strata
    H = int(strata.max()) + 1
    N = np.bincount(strata, minlength=H)
    n = np.bincount(strata[rows], minlength=H)
    if ((N > 0) & (n < 2)).any():
        if design.kind != "uniform":
            bad = int(np.flatnonzero((N > 0) & (n < 2))[0])
            raise ValueError(f"stratum {bad} has {int(n[bad])} labeled rows; the design needs at least 2 per stratum")
        strata = np.zeros_like(strata)
        N, n = np.array([strata.size]), np.array([rows.size])
    return strata, N, n


def total_estimate(v_lab, rows, design: SamplingDesign, C=None, *, scale: float = 1.0, bounds=(0.0, 1.0),
                   confidence: float = 0.95, floor: float = 1.0, active=None, free=()) -> Estimate:
    """Estimate ``sum_corpus v / scale`` from ``v`` on the labeled corpus ``rows`` (module docstring).

    ``C``: ``(n_corpus, p)`` predictions with known corpus totals (``None``: none, the stratified estimator).
    ``floor``: a stratum whose labeled values barely vary is given at least the variance of half a row of the
    other kind (``floor * (0.5 / (n_h + 1))``-scale Jeffreys term), so a pure stratum of 10 rows does not claim
    certainty; ``active`` (bool per labeled row, default all) limits that to strata with labeled rows of the
    estimand's domain, in proportion to their share. The coefficient of a prediction is kept in ``[0, 1]`` (a
    guess of ``v`` is used at most at face value, as PPI++ clips its ``lambda``); columns listed in ``free``
    (domain indicators) are not clipped.
    """
    rows = np.asarray(rows, dtype=np.int64)
    v = np.asarray(v_lab, dtype=np.float64)
    strata, N, n = _collapse(design, rows)
    h = strata[rows]
    H = N.size
    f = np.where(N > 0, n / np.maximum(N, 1), 0.0)
    a = np.where(n > 1, N.astype(float) ** 2 * (1 - f) / np.maximum(n * (n - 1), 1), 0.0)

    def center(x):
        s = np.zeros((H,) + x.shape[1:])
        np.add.at(s, h, x)
        m = s / np.maximum(n, 1).reshape((H,) + (1,) * (x.ndim - 1))
        return x - m[h], m

    vc, vbar = center(v)
    beta = np.zeros(0)
    p = 0
    if C is not None:
        C = np.asarray(C, dtype=np.float64)
        C = C.reshape(C.shape[0], -1)
        Cl = C[rows]
        Cc, Cbar = center(Cl)
        sd = Cc.std(0)
        keep = sd > 1e-12
        if keep.any():
            w = np.sqrt(a[h])[:, None]
            Z = (Cc[:, keep] / sd[keep]) * w
            coef, *_ = np.linalg.lstsq(Z, vc * w[:, 0], rcond=1e-8)
            beta = np.zeros(C.shape[1])
            beta[keep] = coef / sd[keep]
            clip = np.ones(C.shape[1], dtype=bool)
            clip[list(free)] = False
            beta[clip] = np.clip(beta[clip], 0.0, 1.0)
            p = int(np.linalg.matrix_rank(Z))
    if beta.size:
        e = vc - Cc @ beta
        total = float(C.sum(0) @ beta + np.sum(N * (vbar - Cbar @ beta)))
    else:
        e = vc
        total = float(np.sum(N * vbar))
    ss = np.zeros(H)
    np.add.at(ss, h, e ** 2)
    s2 = ss / np.maximum(n - 1, 1)
    j = 0.5 / (n + 1.0)
    act = np.ones(rows.size) if active is None else np.asarray(active, dtype=np.float64)
    share = np.bincount(h, weights=act, minlength=H) / np.maximum(n, 1)
    s2 = np.maximum(s2, floor * j * (1 - j) * share * (float(bounds[1] - bounds[0]) ** 2))
    comp = np.where(n > 1, N.astype(float) ** 2 * (1 - f) / np.maximum(n, 1) * s2, 0.0)
    var = float(comp.sum())
    # degrees of freedom: Satterthwaite's over the strata, less the fitted betas (their cost also inflates the variance)
    den = float(np.sum(np.where(n > 1, comp ** 2 / np.maximum(n - 1, 1), 0.0)))
    df_s = (float(comp.sum()) ** 2 / den) if den > 0 else float(rows.size - H)
    df = int(np.floor(df_s)) - p
    if df > 0 and p:
        var *= (df + p) / df
    df = max(df, 1)
    se = np.sqrt(var) / scale
    est = total / scale
    tq = float(stats.t.ppf(0.5 + confidence / 2, df))
    lo, hi = bounds
    return Estimate(float(np.clip(est, lo, hi)), float(np.clip(est - tq * se, lo, hi)),
                    float(np.clip(est + tq * se, lo, hi)), float(se), df)


def domain_mean(z_lab, rows, design: SamplingDesign, domain=None, F=None, **kw) -> Estimate:
    """Mean of ``z`` over the corpus rows in ``domain`` (bool, all rows when ``None``; its size is known),
    with predictions ``F`` of ``z`` on every corpus row."""
    rows = np.asarray(rows, dtype=np.int64)
    d = np.ones(design.n_corpus) if domain is None else np.asarray(domain, dtype=np.float64)
    cols = [] if domain is None else [d]
    if F is not None:
        F = np.asarray(F, dtype=np.float64).reshape(d.size, -1)
        cols += [d * F[:, k] for k in range(F.shape[1])]
    C = np.column_stack(cols) if cols else None
    return total_estimate(d[rows] * np.asarray(z_lab, dtype=np.float64), rows, design, C, scale=float(d.sum()),
                          active=d[rows] > 0, free=() if domain is None else (0,), **kw)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def prediction_covariates(llm_score=None, clf_score=None, pseudo=None) -> np.ndarray | None:
    """Guesses of ``P(y = 1)`` on every corpus row from the predictions at hand: the LLM score standardised
    around the pseudo-labels' cut, and the classifier's score over its standard deviation (its cut is 0)."""
    from silr.sampling.design import _cut

    cols = []
    if llm_score is not None:
        x = np.asarray(llm_score, dtype=np.float64)
        t = _cut(np.asarray(pseudo).astype(np.int64), x) if pseudo is not None else float(np.median(x))
        cols.append(_sigmoid((x - t) / (np.std(x) or 1.0)))
    if clf_score is not None:
        g = np.asarray(clf_score, dtype=np.float64)
        cols.append(_sigmoid(g / (np.std(g) or 1.0)))
    return np.column_stack(cols) if cols else None


def accuracy_covariates(Q, labels) -> np.ndarray | None:
    """Guesses of ``[y == labels]`` from guesses ``Q`` of ``P(y = 1)``."""
    if Q is None:
        return None
    s = np.asarray(labels, dtype=np.float64)[:, None]
    return s * Q + (1 - s) * (1 - Q)


def round_estimates(y_lab, rows, labels, design: SamplingDesign | None = None, Q=None, *,
                    confidence: float = 0.95) -> dict[str, Estimate]:
    """``pi, theta_p, theta_n, accuracy, gap`` of corpus ``labels`` from gold ``y_lab`` on corpus ``rows``.

    ``design``: the sampling design (``None``: a uniform random sample, post-stratified by ``labels``);
    ``Q``: guesses of ``P(y = 1)`` on every corpus row (:func:`prediction_covariates`), ``None`` for the plain
    design-weighted estimates."""
    rows = np.asarray(rows, dtype=np.int64)
    s = np.asarray(labels).astype(np.int64)
    y = np.asarray(y_lab, dtype=np.float64)
    if design is None:
        design = uniform_design(s.size, rows, post_strata=s)
    kw = {"confidence": confidence}
    P, Nn = s == 1, s == 0
    out = {
        "pi": domain_mean(y, rows, design, None, Q, **kw),
        "theta_p": domain_mean(y, rows, design, P, Q, **kw),
        "theta_n": domain_mean(y, rows, design, Nn, Q, **kw),
        "accuracy": domain_mean((y == s[rows]).astype(float), rows, design, None, accuracy_covariates(Q, s), **kw),
    }
    # the gap theta_p - theta_n as one linear estimand (its two parts share strata after round 0)
    nP, nN = float(P.sum()), float(Nn.sum())
    c = np.where(P, 1.0 / nP, -1.0 / nN) * s.size
    cols = [P.astype(float), Nn.astype(float)]
    if Q is not None:
        cols += [c * Q[:, k] for k in range(Q.shape[1])]
    out["gap"] = total_estimate(c[rows] * y, rows, design, np.column_stack(cols), scale=float(s.size),
                                bounds=(-1.0, 1.0), free=(0, 1), **kw)
    return out


def gain_estimate(y_lab, rows, labels_r, labels_0, design: SamplingDesign | None = None, Q=None, *,
                  confidence: float = 0.95, floor: float | None = None) -> Estimate:
    """Accuracy of ``labels_r`` minus that of ``labels_0`` over the corpus, paired on the labeled rows: only rows
    whose label changed contribute (on them ``[y == s_0] = 1 - [y == s_r]``), and the predictions' guess of the
    same difference is known on every corpus row. ``design=None``: a uniform random sample (one stratum)."""
    rows = np.asarray(rows, dtype=np.int64)
    sr, s0 = np.asarray(labels_r).astype(np.int64), np.asarray(labels_0).astype(np.int64)
    y = np.asarray(y_lab).astype(np.int64)
    v = (y == sr[rows]).astype(float) - (y == s0[rows]).astype(float)
    changed = sr != s0
    if not changed.any():
        return Estimate(0.0, 0.0, 0.0, 0.0, max(rows.size - 1, 1))
    if design is None:
        design = uniform_design(sr.size, rows)
    C = None
    if Q is not None:  # one guess (the mean of the predictions'): few labeled rows changed
        q = np.asarray(Q, dtype=np.float64).mean(1, keepdims=True)
        C = accuracy_covariates(q, sr) - accuracy_covariates(q, s0)
    kw = {} if floor is None else {"floor": floor}
    return total_estimate(v, rows, design, C, scale=float(sr.size), bounds=(-1.0, 1.0), confidence=confidence,
                          active=changed[rows], **kw)
