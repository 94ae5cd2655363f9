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
from typing import Callable

import numpy as np

__all__ = ["DEFAULT_MIN_GAP", "PriorEstimationError", "RefinementError", "Interval", "PriorEstimate",
           "estimate_priors", "check_usable", "no_signal_estimate", "StartGate", "start_gate"]

#: A theta gap below this makes the UU weights (which scale as 1 / gap) too unstable to train on. Small on
#: purpose: 50 labels often underestimate the gap of a 60%-accurate labeler (0.10 estimated for a true 0.24
#: in the benchmark), and the robust risk copes with large weights (benchmarks/SETTINGS.md).
DEFAULT_MIN_GAP = 0.03


class PriorEstimationError(ValueError):
    """The labeled sample cannot support a prior estimate (one class only, or an empty side)."""


class RefinementError(ValueError):
    """The refinement cannot start (for example the LLM labels' priors are inverted)."""


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
    #: where the estimate comes from: ``"labeled"`` (the labeled sample) or ``"confident_joint"`` (the corpus
    #: alone, :func:`silr.priors_unlabeled.estimate_priors_unlabeled`) or ``"design"`` (labeled rows drawn by
    #: ``silr sample``, design-weighted and prediction-powered: :mod:`silr.sampling.refit`)
    method: str = "labeled"

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
            + (f"{self.n_labeled} labeled rows ({self.n_labeled_pseudo_positive} called positive)"
             if self.method in ("labeled", "design") else "estimated from the corpus alone (no gold labels)")
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


def _where(est: PriorEstimate) -> str:
    return "labeled sample" if est.method in ("labeled", "design") else "corpus (no gold labels)"


def check_usable(est: PriorEstimate, *, min_gap: float = DEFAULT_MIN_GAP) -> str | None:
    """Why these priors cannot drive a UU round, or ``None`` when they can."""
    if est.theta_p <= est.theta_n:
        return (
            f"estimated theta_p={est.theta_p:.3f} <= theta_n={est.theta_n:.3f}: the labeler is no better "
            f"than chance or inverted on the {_where(est)} ({est.describe()})"
        )
    if est.gap < min_gap:
        return (
            f"estimated theta gap {est.gap:.3f} (theta_p={est.theta_p:.3f}, theta_n={est.theta_n:.3f}) is "
            f"below {min_gap}: the UU weights would be unstable ({est.describe()})"
        )
    return None


def no_signal_estimate(y_lab, s_lab, s0) -> PriorEstimate:
    """The record of round-0 priors that cannot be estimated (every labeled row on one pseudo side):
    theta_p = theta_n = the labeled positive rate, i.e. no evidence of any signal."""
    pi = float(np.mean(y_lab))
    acc = float(np.mean(np.asarray(s_lab) == np.asarray(y_lab)))
    iv = {k: Interval(v, v) for k, v in (("pi", pi), ("theta_p", pi), ("theta_n", pi), ("accuracy", acc), ("gap", 0.0))}
    return PriorEstimate(pi=pi, theta_p=pi, theta_n=pi, accuracy=acc, pseudo_positive_rate=float(np.mean(s0)),
                         intervals=iv, prob_gap_nonpositive=1.0, n_labeled=int(np.size(y_lab)),
                         n_labeled_pseudo_positive=int(np.sum(s_lab)))


@dataclass(frozen=True)
class StartGate:
    """Round 0's priors and whether they may start a refinement.

    ``why`` is ``None`` when they may, else the reason they may not; ``round0_labeled`` says how the labeled
    rows' round-0 labels were made (as given, or out-of-fold threshold labels)."""

    estimate: PriorEstimate
    why: str | None
    round0_labeled: str


def start_gate(
    y_lab: np.ndarray,
    s_lab: np.ndarray,
    s0: np.ndarray,
    estimate: Callable[[np.ndarray, np.ndarray, np.ndarray], PriorEstimate],
    *,
    llm_score: np.ndarray | None = None,
    llm_score_lab: np.ndarray | None = None,
    min_gap: float = DEFAULT_MIN_GAP,
    start_gap_lower: float | str | None = "auto",
    can_fall_back: bool = True,
    threshold_fitted: bool = True,
) -> StartGate:
    """Round 0: estimate the pseudo-labels' priors and decide whether they can start a refinement.

    When the pseudo-labels are a threshold of the LLM score, that threshold may have been fitted on the
    labeled rows (``--threshold accuracy``), which makes the LLM look better on them than it is; then each
    labeled row gets the label of a threshold fitted on the other folds. ``estimate(y_lab, s_lab, s_corpus)``
    makes one estimate. ``start_gap_lower`` also requires the lower end of the 95% interval of the gap
    ``theta_p - theta_n`` to exceed it (``"auto"``: 0.0 when LLM scores are given, else off).
    ``can_fall_back``: a failed estimate is recorded as "no signal" (the hand-back decides) instead of
    raising :class:`RefinementError`. ``threshold_fitted=False``: the threshold is known not to come from the
    labeled rows (a fixed number, ``--threshold prior``), so their round-0 labels are taken as given.
    """
    from silr.selection import is_threshold_of, threshold_oof_predict

    s_lab_prior = s_lab
    round0_labeled = "as given"
    if threshold_fitted and llm_score is not None and np.size(y_lab) and is_threshold_of(s0, llm_score):
        s_lab_prior = threshold_oof_predict(llm_score_lab, y_lab).astype(np.int8)
        round0_labeled = "threshold on the LLM score refitted out of fold"
    oof_failed = None
    try:
        first = estimate(y_lab, s_lab_prior, s0)
    except PriorEstimationError as e:
        if s_lab_prior is s_lab:
            raise RefinementError(f"cannot estimate the class priors of the pseudo-labels: {e}") from e
        # the out-of-fold threshold put every labeled row on one side: no usable evidence of signal; the
        # in-sample labels are recorded and the refinement does not start
        oof_failed = str(e)
        try:
            first = estimate(y_lab, s_lab, s0)
        except PriorEstimationError as e2:
            if not can_fall_back:
                raise RefinementError(f"cannot estimate the class priors of the pseudo-labels: {e2}") from e2
            # nothing to estimate from (every labeled row on one side): recorded as "no signal"
            first = no_signal_estimate(y_lab, s_lab, s0)
            oof_failed = str(e2)
    why = check_usable(first, min_gap=min_gap)
    if oof_failed is not None:
        why = f"with the LLM threshold refitted out of fold, {oof_failed}"
    lower = start_gap_lower
    if lower == "auto":
        lower = 0.0 if llm_score is not None else None
    if why is None and lower is not None:
        iv = first.intervals.get("gap")
        if iv is not None and iv.low <= float(lower):
            why = (f"the 95% interval of the estimated theta gap, [{iv.low:.3f}, {iv.high:.3f}], reaches "
                   f"{float(lower):g}: no evidence on the {_where(first)} that the LLM beats chance "
                   f"({first.describe()})")
    return StartGate(first, why, round0_labeled)
