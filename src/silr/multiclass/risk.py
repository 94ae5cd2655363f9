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
"""

from __future__ import annotations

import numpy as np
import torch

from silr.multiclass.tmatrix import DEFAULT_MAX_CONDITION, TMatrixError, condition_number
from silr.risks import DEFAULT_SLOPE, leaky

__all__ = ["KWeights", "class_partial_risks", "kclass_risk", "robust_kclass_risk", "kclass_pn_risk",
           "kclass_batch_risk", "KCLASS_RISKS"]


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


KCLASS_RISKS = {
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
