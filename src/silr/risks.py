"""Risks for learning from two unlabeled sets (pure PyTorch, no I/O).

Notation (Asano et al., NeurIPS 2025; Lu et al., ICLR 2019 / AISTATS 2020):

* ``pi``      = P(y = +1) over the corpus,
* ``theta_p`` = P(y = +1 | x in P~), the positive rate of the pseudo-positive set,
* ``theta_n`` = P(y = +1 | x in N~), the positive rate of the pseudo-negative set,
* ``l(z, y) = sigmoid(-y z)``, the sigmoid loss.

With ``D = theta_p - theta_n`` the unbiased UU risk is::

    a = pi (1 - theta_n) / D      b = (1 - pi) theta_n / D
    c = pi (1 - theta_p) / D      d = (1 - pi) theta_p / D
    R_uu(g) = a R_P~^+ - b R_P~^- - c R_N~^+ + d R_N~^-

and the robust (consistently corrected) UU risk is::

    R_ruu(g) = f(a R_P~^+ - c R_N~^+) + f(d R_N~^- - b R_P~^-)
    f(x) = x if x > 0 else slope * x        (slope = -0.001: a "generalized leaky ReLU")

Both arguments of ``f`` are partial (class-wise) risks; they go negative only when the model over-fits
and the negative slope pushes it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

RiskName = Literal["robust_uu", "uu", "pn"]

#: Default slope of the generalized leaky ReLU for negative partial risks (PAPER.md section 3).
DEFAULT_SLOPE = -0.001


def sigmoid_loss(z: torch.Tensor, y: int) -> torch.Tensor:
    """``l(z, y) = sigmoid(-y z)`` elementwise, for a label ``y`` in {+1, -1}."""
    return torch.sigmoid(-y * z)


@dataclass(frozen=True)
class UUWeights:
    """The four weights ``a, b, c, d`` of the UU risk, derived from ``(pi, theta_p, theta_n)``."""

    a: float
    b: float
    c: float
    d: float

    @classmethod
    def from_priors(cls, pi: float, theta_p: float, theta_n: float) -> "UUWeights":
        gap = theta_p - theta_n
        if not gap > 0:
            raise ValueError(
                f"UU weights need theta_p > theta_n; got theta_p={theta_p:.4f}, theta_n={theta_n:.4f}"
            )
        return cls(
            a=pi * (1 - theta_n) / gap,
            b=(1 - pi) * theta_n / gap,
            c=pi * (1 - theta_p) / gap,
            d=(1 - pi) * theta_p / gap,
        )


def _mean_or_zero(x: torch.Tensor) -> torch.Tensor:
    return x.mean() if x.numel() else x.new_zeros(())


def partial_risks(
    scores: torch.Tensor, pseudo: torch.Tensor, weights: UUWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive- and negative-class partial risks of a batch.

    ``scores`` are real-valued outputs ``g(x)``; ``pseudo`` is 1 for P~ and 0 for N~.
    Returns ``(a R_P^+ - c R_N^+,  d R_N^- - b R_P^-)``. A batch with no member of one set
    contributes 0 for that set's terms.
    """
    is_p = pseudo.bool()
    zp, zn = scores[is_p], scores[~is_p]
    pos = weights.a * _mean_or_zero(sigmoid_loss(zp, +1)) - weights.c * _mean_or_zero(sigmoid_loss(zn, +1))
    neg = weights.d * _mean_or_zero(sigmoid_loss(zn, -1)) - weights.b * _mean_or_zero(sigmoid_loss(zp, -1))
    return pos, neg


def uu_risk(scores: torch.Tensor, pseudo: torch.Tensor, weights: UUWeights) -> torch.Tensor:
    """Unbiased UU risk (Lu et al., 2019): the sum of the two partial risks."""
    pos, neg = partial_risks(scores, pseudo, weights)
    return pos + neg


def leaky(x: torch.Tensor, slope: float = DEFAULT_SLOPE) -> torch.Tensor:
    """Generalized leaky ReLU: ``x`` for ``x > 0``, ``slope * x`` otherwise."""
    return torch.where(x > 0, x, slope * x)


def robust_uu_risk(
    scores: torch.Tensor, pseudo: torch.Tensor, weights: UUWeights, slope: float = DEFAULT_SLOPE
) -> torch.Tensor:
    """Robust UU risk (Lu et al., 2020): each partial risk passed through :func:`leaky`."""
    pos, neg = partial_risks(scores, pseudo, weights)
    return leaky(pos, slope) + leaky(neg, slope)


def pn_risk(
    scores: torch.Tensor, labels: torch.Tensor, pi: float | None = None
) -> torch.Tensor:
    """Supervised (PN) risk, treating ``labels`` (0/1) as clean.

    With ``pi=None`` it is the plain mean loss over the batch (PN learning on pseudo-labels);
    with a prior it is ``pi R_P^+ + (1 - pi) R_N^-`` (class-prior weighted).
    """
    is_p = labels.bool()
    if pi is None:
        losses = torch.where(is_p, sigmoid_loss(scores, +1), sigmoid_loss(scores, -1))
        return _mean_or_zero(losses)
    return pi * _mean_or_zero(sigmoid_loss(scores[is_p], +1)) + (1 - pi) * _mean_or_zero(
        sigmoid_loss(scores[~is_p], -1)
    )


def joint_risk(
    corpus_risk: torch.Tensor, labeled_scores: torch.Tensor, labeled_y: torch.Tensor, weight: float
) -> torch.Tensor:
    """PNU-style joint objective: ``(1 - weight) * corpus_risk + weight * pn_risk(labeled_scores, labeled_y)``.

    ``corpus_risk`` is the (UU / robust UU / PN) risk of a corpus batch; the second term is the plain
    supervised sigmoid risk (mean loss) of a batch of gold-labeled rows (``labeled_y`` 0/1). ``weight`` in [0, 1].
    """
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"the supervised weight must be in [0, 1], got {weight!r}")
    w = float(weight)
    return (1.0 - w) * corpus_risk + w * pn_risk(labeled_scores, labeled_y)


def batch_risk(
    name: str,
    scores: torch.Tensor,
    pseudo: torch.Tensor,
    weights: UUWeights,
    *,
    slope: float = DEFAULT_SLOPE,
) -> torch.Tensor:
    """The corpus risk named ``name`` (a key of :data:`CORPUS_RISKS`) of one batch."""
    try:
        risk = CORPUS_RISKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown risk {name!r}; choose one of {', '.join(RISKS)}") from None
    return risk(scores, pseudo, weights, slope)


#: The corpus risks by name, each ``risk(scores, pseudo, weights, slope)``: adding a risk is one entry here.
CORPUS_RISKS: dict[str, Callable[[torch.Tensor, torch.Tensor, UUWeights, float], torch.Tensor]] = {
    "robust_uu": robust_uu_risk,
    "uu": lambda scores, pseudo, weights, slope: uu_risk(scores, pseudo, weights),
    "pn": lambda scores, pseudo, weights, slope: pn_risk(scores, pseudo),  # PN on the pseudo-labels (a baseline)
}
RISKS: tuple[str, ...] = tuple(CORPUS_RISKS)
