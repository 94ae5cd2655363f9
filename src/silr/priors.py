"""Class priors of the current labeler, estimated from the small labeled sample only.

Every round the corpus is split by the current labeler into P~ (pseudo-positive) and N~. The corpus gives
the exact pseudo-positive rate ``rho = |P~| / n``; the labeled sample (gold ``y`` and the labeler's
``y~`` on the same rows) gives the positive rate inside each side. With ``rho`` known, the maximum-likelihood
(post-stratified) estimates are::

    theta_p = P(y=1 | y~=1)   from the labeled rows the labeler calls positive
    theta_n = P(y=1 | y~=0)   from the labeled rows the labeler calls negative
    pi      = rho theta_p + (1 - rho) theta_n
    accuracy of the labeler = rho theta_p + (1 - rho) (1 - theta_n)

Each proportion uses the Jeffreys posterior mean ``(k + 1/2) / (m + 1)`` so a side with all-positive or
all-negative rows does not give a degenerate 0 or 1. Intervals are percentile bootstrap intervals over
the labeled rows. Nothing here ever sees gold labels beyond the sample it is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

#: A theta gap below this makes the UU weights (which scale as 1 / gap) too unstable to train on. Small on
#: purpose: 50 labels often underestimate the gap of a 60%-accurate labeler (0.10 estimated for a true 0.24
#: in the benchmark), and the robust risk copes with large weights (benchmarks/SETTINGS.md).
DEFAULT_MIN_GAP = 0.03


class PriorEstimationError(ValueError):
    """The labeled sample cannot support a prior estimate (one class only, or an empty side)."""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class PriorEstimate:
    """Estimated class priors of one labeler, with bootstrap intervals.

    Attributes
    ----------
    pi, theta_p, theta_n : float
        Point estimates (see the module docstring for the formulas).
    accuracy : float
        Estimated accuracy of the labeler's hard labels over the corpus.
    intervals : dict
        ``{"pi": Interval, "theta_p": ..., "theta_n": ..., "accuracy": ..., "gap": ...}``.
    pseudo_positive_rate : float
        ``rho``, the exact share of the corpus the labeler calls positive.
    prob_gap_nonpositive : float
        Share of bootstrap draws in which ``theta_p <= theta_n`` (the labeler is not better than chance).
    n_labeled, n_labeled_pseudo_positive : int
        The sample size and how many sample rows the labeler calls positive.
    """

    pi: float
    theta_p: float
    theta_n: float
    accuracy: float
    pseudo_positive_rate: float
    intervals: dict[str, Interval] = field(default_factory=dict)
    prob_gap_nonpositive: float = 0.0
    n_labeled: int = 0
    n_labeled_pseudo_positive: int = 0
    confidence: float = 0.95

    @property
    def gap(self) -> float:
        return self.theta_p - self.theta_n

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gap"] = self.gap
        d["intervals"] = {k: [v.low, v.high] for k, v in self.intervals.items()}
        return d

    def describe(self) -> str:
        iv = self.intervals

        def fmt(name: str) -> str:
            v = getattr(self, name)
            if name in iv:
                return f"{name}={v:.3f} [{iv[name].low:.3f}, {iv[name].high:.3f}]"
            return f"{name}={v:.3f}"

        return ", ".join(fmt(n) for n in ("pi", "theta_p", "theta_n", "accuracy")) + (
            f"; pseudo-positive rate {self.pseudo_positive_rate:.3f}; "
            f"{self.n_labeled} labeled rows ({self.n_labeled_pseudo_positive} called positive)"
        )


def _jeffreys(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (k + 0.5) / (m + 1.0)


def _point(y: np.ndarray, s: np.ndarray, rho: float) -> tuple[float, float, float, float]:
    k_p = float(np.sum(y[s == 1]))
    m_p = float(np.sum(s == 1))
    k_n = float(np.sum(y[s == 0]))
    m_n = float(np.sum(s == 0))
    theta_p = float(_jeffreys(np.array(k_p), np.array(m_p)))
    theta_n = float(_jeffreys(np.array(k_n), np.array(m_n)))
    pi = rho * theta_p + (1 - rho) * theta_n
    acc = rho * theta_p + (1 - rho) * (1 - theta_n)
    return pi, theta_p, theta_n, acc


def _as_binary(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise PriorEstimationError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))][:3]
        raise PriorEstimationError(f"{name} must be 0/1; found values such as {bad.tolist()}")
    return arr.astype(np.int64)


def estimate_priors(
    y_labeled,
    pseudo_labeled,
    pseudo_positive_rate: float,
    *,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PriorEstimate:
    """Estimate ``pi, theta_p, theta_n`` of a labeler from a small labeled sample.

    Parameters
    ----------
    y_labeled : array of 0/1
        Gold labels of the labeled sample (the only gold labels the pipeline may read).
    pseudo_labeled : array of 0/1
        The labeler's labels on the same rows.
    pseudo_positive_rate : float
        Share of the corpus that the labeler calls positive (exact, from the corpus).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([1] * 20 + [0] * 30)
    >>> s = np.array([1] * 16 + [0] * 4 + [1] * 6 + [0] * 24)
    >>> est = estimate_priors(y, s, pseudo_positive_rate=0.44)
    >>> round(est.theta_p, 2), round(est.theta_n, 2)
    (0.72, 0.15)
    """
    y = _as_binary("gold labels of the labeled sample", y_labeled)
    s = _as_binary("pseudo-labels of the labeled sample", pseudo_labeled)
    if y.shape != s.shape:
        raise PriorEstimationError(f"labeled sample: {y.size} gold labels but {s.size} pseudo-labels")
    if y.size == 0:
        raise PriorEstimationError("the labeled sample is empty")
    if y.min() == y.max():
        raise PriorEstimationError(
            f"the labeled sample has one class only (all {int(y[0])}, {y.size} rows); "
            "class priors need both positives and negatives"
        )
    if s.min() == s.max():
        side = "positive" if s[0] == 1 else "negative"
        raise PriorEstimationError(
            f"the labeler calls every one of the {s.size} labeled rows {side}, so the positive rate of "
            f"the other side cannot be estimated; label more rows or check the pseudo-labels"
        )
    rho = float(pseudo_positive_rate)
    if not 0.0 < rho < 1.0:
        raise PriorEstimationError(
            f"pseudo-positive rate is {rho:.4f}: all pseudo-labels are one class, so there are not two "
            "unlabeled sets to learn from"
        )
    pi, theta_p, theta_n, acc = _point(y, s, rho)

    rng = np.random.default_rng(seed)
    n = y.size
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    yb, sb = y[idx], s[idx]
    k_p = (yb * sb).sum(1)
    m_p = sb.sum(1)
    k_n = (yb * (1 - sb)).sum(1)
    m_n = n - m_p
    tp = _jeffreys(k_p, m_p)
    tn = _jeffreys(k_n, m_n)
    draws = {
        "pi": rho * tp + (1 - rho) * tn,
        "theta_p": tp,
        "theta_n": tn,
        "accuracy": rho * tp + (1 - rho) * (1 - tn),
        "gap": tp - tn,
    }
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    intervals = {
        k: Interval(float(np.quantile(v, lo_q)), float(np.quantile(v, hi_q))) for k, v in draws.items()
    }
    return PriorEstimate(
        pi=pi,
        theta_p=theta_p,
        theta_n=theta_n,
        accuracy=acc,
        pseudo_positive_rate=rho,
        intervals=intervals,
        prob_gap_nonpositive=float(np.mean(draws["gap"] <= 0)),
        n_labeled=int(n),
        n_labeled_pseudo_positive=int(s.sum()),
        confidence=confidence,
    )


def check_usable(est: PriorEstimate, *, min_gap: float = DEFAULT_MIN_GAP) -> str | None:
    """Why these priors cannot drive a UU round, or ``None`` when they can."""
    if est.theta_p <= est.theta_n:
        return (
            f"estimated theta_p={est.theta_p:.3f} <= theta_n={est.theta_n:.3f}: the labeler is no better "
            f"than chance or inverted on the labeled sample ({est.describe()})"
        )
    if est.gap < min_gap:
        return (
            f"estimated theta gap {est.gap:.3f} (theta_p={est.theta_p:.3f}, theta_n={est.theta_n:.3f}) is "
            f"below {min_gap}: the UU weights would be unstable ({est.describe()})"
        )
    return None
