"""The K-class noise matrix ``T[k, c] = P(y = c | pseudo-label = k)``, estimated from the labeled rows.

The binary priors (:mod:`silr.priors`) are the K = 2 case: ``T = [[1 - theta_n, theta_n], [1 - theta_p,
theta_p]]`` (row 0 = pseudo-negative, row 1 = pseudo-positive; column 1 = the positive class).

The corpus gives the exact pseudo-label rates ``rho_k = |U_k| / n``; the labeled rows give the class mix inside
each pseudo-label set. Each row of ``T`` is a posterior mean under a Dirichlet prior (post-stratified, so the
class priors are ``pi_c = sum_k rho_k T[k, c]`` and the labeler's accuracy is ``sum_k rho_k T[k, k]``):

* ``prior="jeffreys"``: Dirichlet(1/2, ..., 1/2) per row; for K = 2 this is exactly the binary Jeffreys
  estimate ``(k + 1/2) / (m + 1)`` of :func:`silr.priors.estimate_priors`;
* ``prior="pooled"`` (default for K > 2): a row with few labeled rows is shrunk towards the pooled structure
  ``a e_k + (1 - a) q``, where ``a`` is the labeler's pooled accuracy on the labeled rows and ``q`` the pooled
  class mix of its mistakes, with ``strength`` pseudo-rows. A pseudo-label with no labeled row then gets the
  pooled structure instead of a uniform row (which would make ``T`` singular).

Intervals are percentile bootstrap intervals over the labeled rows. Nothing here reads gold labels beyond the
sample it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TMatrixError", "TEstimate", "estimate_T", "binary_T", "condition_number", "regularize_T",
           "DEFAULT_MAX_CONDITION", "PRIORS"]

#: ``T`` with a larger condition number is too close to singular to invert (the risk's weights scale with it)
DEFAULT_MAX_CONDITION = 30.0
PRIORS = ("pooled", "jeffreys")


class TMatrixError(ValueError):
    """The labeled sample cannot give a usable ``T`` (bad input, or a near-singular matrix)."""


def binary_T(theta_p: float, theta_n: float) -> np.ndarray:
    """The K = 2 matrix of the binary priors (row/column 1 = the positive class)."""
    return np.array([[1.0 - theta_n, theta_n], [1.0 - theta_p, theta_p]], dtype=np.float64)


def condition_number(T: np.ndarray) -> float:
    """2-norm condition number of ``T`` (inf when singular)."""
    s = np.linalg.svd(np.asarray(T, dtype=np.float64), compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def regularize_T(T: np.ndarray, max_condition: float = DEFAULT_MAX_CONDITION) -> tuple[np.ndarray, float]:
    """``(1 - lam) T + lam I`` with the smallest ``lam`` on a grid of 0.01 that brings the condition number to at
    most ``max_condition``; returns ``(matrix, lam)``. Shrinking towards the identity trusts the pseudo-labels
    more (less correction), never inverts a class."""
    T = np.asarray(T, dtype=np.float64)
    eye = np.eye(T.shape[0])
    for lam in np.arange(0.0, 1.0001, 0.01):
        M = (1 - lam) * T + lam * eye
        if condition_number(M) <= max_condition:
            return M, float(lam)
    return eye, 1.0  # pragma: no cover - the identity has condition number 1


@dataclass(frozen=True)
class TEstimate:
    """Estimated ``T`` with bootstrap intervals.

    ``T[k, c] = P(y = c | pseudo = k)``; ``rates[k]`` is the exact corpus share of pseudo-label ``k``;
    ``pi[c] = sum_k rates[k] T[k, c]``; ``accuracy = sum_k rates[k] T[k, k]``; ``low``/``high`` are the
    ``confidence`` bootstrap intervals of ``T`` cell by cell; ``counts[k, c]`` the labeled rows behind them.
    """

    T: np.ndarray
    rates: np.ndarray
    counts: np.ndarray
    low: np.ndarray
    high: np.ndarray
    accuracy: float
    accuracy_interval: tuple[float, float]
    prior: str = "pooled"
    strength: float = 2.0
    confidence: float = 0.95
    regularized: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def K(self) -> int:
        return int(self.T.shape[0])

    @property
    def pi(self) -> np.ndarray:
        return self.rates @ self.T

    @property
    def condition(self) -> float:
        return condition_number(self.T)

    @property
    def n_labeled(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict:
        return {"T": self.T.tolist(), "T_low": self.low.tolist(), "T_high": self.high.tolist(),
                "rates": self.rates.tolist(), "pi": self.pi.tolist(), "counts": self.counts.astype(int).tolist(),
                "accuracy": self.accuracy, "accuracy_interval": list(self.accuracy_interval),
                "condition": self.condition, "prior": self.prior, "strength": self.strength,
                "regularized": self.regularized, "n_labeled": self.n_labeled, "notes": list(self.notes)}

    def describe(self) -> str:
        lo, hi = self.accuracy_interval
        return (f"K={self.K}, estimated accuracy {self.accuracy:.3f} [{lo:.3f}, {hi:.3f}], condition number "
                f"{self.condition:.1f}, {self.n_labeled} labeled rows")


def _codes(name: str, a, K: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise TMatrixError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= K):
        raise TMatrixError(f"{name} must be class codes 0..{K - 1}; found values such as {arr[:3].tolist()}")
    return arr.astype(np.int64)


def _rows(counts: np.ndarray, prior: str, strength: float) -> np.ndarray:
    """Posterior-mean rows of ``T`` from a ``(draws, K, K)`` (or ``(K, K)``) count array."""
    K = counts.shape[-1]
    if prior == "jeffreys":
        alpha = np.full(counts.shape, 0.5)
    else:
        total = counts.sum(axis=(-2, -1), keepdims=True)
        diag = np.trace(counts, axis1=-2, axis2=-1)[..., None, None]
        a = (diag + 0.5) / (total + 1.0)  # pooled accuracy (Jeffreys)
        off = counts * (1 - np.eye(K))
        q_c = off.sum(axis=-2, keepdims=True) + 0.5  # pooled class mix of the mistakes, (.., 1, K)
        # row k's off-diagonal share over c != k, from the pooled mistakes
        q = np.broadcast_to(q_c, counts.shape) * (1 - np.eye(K))
        q = q / q.sum(axis=-1, keepdims=True)
        alpha = strength * (a * np.eye(K) + (1 - a) * q)
    post = counts + alpha
    return post / post.sum(axis=-1, keepdims=True)


def estimate_T(y_labeled, pseudo_labeled, rates, *, K: int | None = None, prior: str = "auto",
               strength: float = 2.0, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> TEstimate:
    """Estimate ``T`` from the labeled rows' gold codes and pseudo-label codes (both ``0..K-1``).

    ``rates``: the exact corpus share of each pseudo-label (length K, sums to 1). ``prior``: ``"pooled"``,
    ``"jeffreys"``, or ``"auto"`` (Jeffreys for K = 2, as the binary priors; pooled otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([1] * 20 + [0] * 30)
    >>> s = np.array([1] * 16 + [0] * 4 + [1] * 6 + [0] * 24)
    >>> est = estimate_T(y, s, [0.56, 0.44], n_bootstrap=10)
    >>> round(est.T[1, 1], 2), round(est.T[0, 1], 2)
    (0.72, 0.15)
    """
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size < 2:
        raise TMatrixError(f"rates must list the corpus share of each of K >= 2 pseudo-labels, got {rates.tolist()}")
    K = int(rates.size if K is None else K)
    if rates.size != K:
        raise TMatrixError(f"rates has {rates.size} entries for K={K} classes")
    if (rates < 0).any() or not np.isclose(rates.sum(), 1.0, atol=1e-6):
        raise TMatrixError(f"rates must be shares summing to 1, got {np.round(rates, 4).tolist()}")
    y = _codes("gold codes of the labeled rows", y_labeled, K)
    s = _codes("pseudo-label codes of the labeled rows", pseudo_labeled, K)
    if y.shape != s.shape:
        raise TMatrixError(f"labeled rows: {y.size} gold codes but {s.size} pseudo-label codes")
    if y.size == 0:
        raise TMatrixError("the labeled sample is empty")
    if prior == "auto":
        prior = "jeffreys" if K == 2 else "pooled"
    if prior not in PRIORS:
        raise TMatrixError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)} or 'auto'")
    if not strength > 0:
        raise TMatrixError(f"strength must be > 0, got {strength!r}")
    counts = np.zeros((K, K))
    np.add.at(counts, (s, y), 1.0)
    T = _rows(counts, prior, strength)
    acc = float(rates @ np.diag(T))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, size=(n_bootstrap, y.size))
    bc = np.zeros((n_bootstrap, K, K))
    np.add.at(bc, (np.repeat(np.arange(n_bootstrap), y.size), s[idx].ravel(), y[idx].ravel()), 1.0)
    Tb = _rows(bc, prior, strength)
    accb = np.einsum("k,bkk->b", rates, Tb)
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    notes = [f"pseudo-label {k} has no labeled row: its row of T is the prior's" for k in range(K) if counts[k].sum() == 0]
    return TEstimate(T=T, rates=rates, counts=counts, low=np.quantile(Tb, lo_q, axis=0),
                     high=np.quantile(Tb, hi_q, axis=0), accuracy=acc,
                     accuracy_interval=(float(np.quantile(accb, lo_q)), float(np.quantile(accb, hi_q))),
                     prior=prior, strength=float(strength), confidence=confidence, notes=notes)
