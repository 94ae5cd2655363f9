"""The K-class corrected risk from K pseudo-label sets (pure PyTorch, no I/O).

The pseudo-labels split the corpus into K unlabeled sets ``U_k``. If the class-conditional densities do not
depend on the pseudo-label, ``p_{U_k} = sum_c T[k, c] p_c``, so ``p_c = sum_k Tinv[c, k] p_{U_k}`` and the
clean risk is::

    R(f) = sum_c  R_c(f),     R_c(f) = pi_c sum_k Tinv[c, k] E_{U_k}[ l(f(x), c) ]

with ``l(f(x), c) = 1 - softmax(f(x))_c``, the bounded K-class form of the sigmoid loss (for K = 2 and logits
``(0, z)`` it is ``sigmoid(-z)`` for class 1 and ``sigmoid(z)`` for class 0: the binary loss). The robust
version passes each class's partial risk ``R_c`` through the generalized leaky ReLU, as the binary robust UU
risk does with its two partial risks; for K = 2 and ``T = binary_T(theta_p, theta_n)`` the two are equal
(:mod:`silr.risks`).

``ovr_robust_uu`` is each class against the rest with the binary robust UU risk on its own logit (``U_c`` the
pseudo-positive set, the other sets the pseudo-negative one; ``theta_p = T[c, c]``, ``theta_n`` and ``pi_c`` from
``T`` and the rates), summed over classes; ``mix_robust_uu`` (what the refiner's ``robust_uu`` means for K > 2,
:data:`silr.multiclass.loop.KCLASS_RISK`) is the robust K-class risk plus that sum.
"""

from __future__ import annotations

import numpy as np
import torch

from silr.multiclass.tmatrix import DEFAULT_MAX_CONDITION, TMatrixError, condition_number
from silr.risks import DEFAULT_SLOPE, leaky

__all__ = ["KWeights", "class_partial_risks", "kclass_risk", "robust_kclass_risk", "kclass_pn_risk",
           "kclass_batch_risk", "KCLASS_RISKS", "ovr_partial_risks", "robust_ovr_risk"]


class KWeights:
    """``W[c, k] = pi_c Tinv[c, k]`` (as a tensor), from ``T`` and the pseudo-label rates.

    Raises :class:`TMatrixError` when ``T``'s condition number exceeds ``max_condition`` (the weights scale
    with ``Tinv``; pass a regularised ``T``, :func:`silr.multiclass.tmatrix.regularize_T`, to go on)."""

    def __init__(self, T, rates, *, max_condition: float | None = DEFAULT_MAX_CONDITION):
        T = np.asarray(T, dtype=np.float64)
        rates = np.asarray(rates, dtype=np.float64)
        if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 2:
            raise TMatrixError(f"T must be a K x K matrix with K >= 2, got shape {T.shape}")
        if rates.shape != (T.shape[0],):
            raise TMatrixError(f"rates must have {T.shape[0]} entries, got shape {rates.shape}")
        cond = condition_number(T)
        if max_condition is not None and not cond <= max_condition:
            raise TMatrixError(
                f"T is near-singular (condition number {cond:.3g} > {max_condition:g}): some pseudo-label sets have "
                "almost the same class mix, so the correction would divide by ~0; label more rows, merge classes, "
                "or regularise T (silr.multiclass.regularize_T)")
        self.T, self.rates = T, rates
        self.pi = rates @ T
        self.Tinv = np.linalg.inv(T)
        self.W = torch.as_tensor(self.pi[:, None] * self.Tinv, dtype=torch.float32)
        self.K = T.shape[0]
        self.ovr = _ovr_weights(T, rates, self.pi)


#: smallest gap ``theta_p - theta_n`` of a class's one-vs-rest UU weights (a class whose pseudo-label is no
#: better than chance gets the weights of this gap instead of an error: a strong correction, kept finite)
MIN_OVR_GAP = 0.05


def _ovr_weights(T, rates, pi) -> torch.Tensor:
    """``(4, K)``: the binary UU weights ``a, b, c, d`` (:class:`silr.risks.UUWeights`) of each class against the
    rest, from ``T``: ``theta_p = T[c, c]`` (class c's rate in its own pseudo-label set) and ``theta_n`` (its rate
    in the other sets, ``(pi_c - rho_c T[c, c]) / (1 - rho_c)``)."""
    tp = np.diag(T)
    tn = np.clip((pi - rates * tp) / np.clip(1.0 - rates, 1e-12, None), 0.0, 1.0)
    gap = np.maximum(tp - tn, MIN_OVR_GAP)
    w = np.stack([pi * (1 - tn), (1 - pi) * tn, pi * (1 - tp), (1 - pi) * tp]) / gap
    return torch.as_tensor(w, dtype=torch.float32)


def _set_means(loss: torch.Tensor, pseudo: torch.Tensor, K: int) -> torch.Tensor:
    """``M[k, c] = mean over rows of U_k of loss[:, c]`` (0 for an empty set in the batch)."""
    onehot = torch.nn.functional.one_hot(pseudo.long(), K).to(loss.dtype)  # (n, K)
    sums = onehot.t() @ loss  # (K, K)
    n_k = onehot.sum(0)
    return sums / n_k.clamp_min(1.0)[:, None]


def class_partial_risks(logits: torch.Tensor, pseudo: torch.Tensor, weights: KWeights) -> torch.Tensor:
    """The K partial risks ``R_c = sum_k W[c, k] E_{U_k}[1 - softmax(f(x))_c]`` of a batch (shape ``(K,)``)."""
    loss = 1.0 - torch.softmax(logits, dim=-1)
    M = _set_means(loss, pseudo, weights.K)  # (K sets, K classes)
    return (weights.W.to(logits.dtype) * M.t()).sum(1)


def kclass_risk(logits, pseudo, weights: KWeights) -> torch.Tensor:
    """The unbiased corrected risk: the sum of the class partial risks."""
    return class_partial_risks(logits, pseudo, weights).sum()


def robust_kclass_risk(logits, pseudo, weights: KWeights, slope: float = DEFAULT_SLOPE) -> torch.Tensor:
    """The robust corrected risk: each class's partial risk through the generalized leaky ReLU."""
    return leaky(class_partial_risks(logits, pseudo, weights), slope).sum()


def kclass_pn_risk(logits, labels) -> torch.Tensor:
    """Mean bounded loss against ``labels`` taken as clean (PN on pseudo-labels; the supervised term)."""
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    p = torch.softmax(logits, dim=-1)
    return (1.0 - p.gather(1, labels.long()[:, None])).mean()


def ovr_partial_risks(logits, pseudo, weights: KWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class against the rest with the binary UU risk on its own logit: ``U_c`` is the pseudo-positive set and
    the other sets together the pseudo-negative one (weights :func:`_ovr_weights`). Returns the ``(K,)`` positive-
    and negative-side partial risks ``a R_P^+ - c R_N^+`` and ``d R_N^- - b R_P^-`` of every class."""
    K = weights.K
    isp = torch.nn.functional.one_hot(pseudo.long(), K).to(logits.dtype)  # (n, K): row in U_c
    isn = 1.0 - isp
    n_p, n_n = isp.sum(0).clamp_min(1.0), isn.sum(0).clamp_min(1.0)
    lp, ln = torch.sigmoid(-logits), torch.sigmoid(logits)  # loss as class c / as not c
    Rp_pos, Rn_pos = (isp * lp).sum(0) / n_p, (isn * lp).sum(0) / n_n
    Rp_neg, Rn_neg = (isp * ln).sum(0) / n_p, (isn * ln).sum(0) / n_n
    a, b, c, d = weights.ovr.to(logits.dtype)
    return a * Rp_pos - c * Rn_pos, d * Rn_neg - b * Rp_neg


def robust_ovr_risk(logits, pseudo, weights: KWeights, slope: float = DEFAULT_SLOPE) -> torch.Tensor:
    """K binary robust UU risks, one per class against the rest (the binary engine's risk, fitted jointly as one
    K-output head): each partial risk through the generalized leaky ReLU, summed over classes."""
    pos, neg = ovr_partial_risks(logits, pseudo, weights)
    return (leaky(pos, slope) + leaky(neg, slope)).sum()


KCLASS_RISKS = {
    "ovr_robust_uu": lambda z, s, w, slope: robust_ovr_risk(z, s, w, slope),
    "mix_robust_uu": lambda z, s, w, slope: robust_ovr_risk(z, s, w, slope) + robust_kclass_risk(z, s, w, slope),
    "robust_uu": lambda z, s, w, slope: robust_kclass_risk(z, s, w, slope),
    "uu": lambda z, s, w, slope: kclass_risk(z, s, w),
    "pn": lambda z, s, w, slope: kclass_pn_risk(z, s),
}


def kclass_batch_risk(name: str, logits, pseudo, weights: KWeights, *, slope: float = DEFAULT_SLOPE):
    """The K-class corpus risk named ``name`` (the binary risks' names: robust_uu, uu, pn)."""
    try:
        fn = KCLASS_RISKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown risk {name!r}; choose one of {', '.join(KCLASS_RISKS)}") from None
    return fn(logits, pseudo, weights, slope)
