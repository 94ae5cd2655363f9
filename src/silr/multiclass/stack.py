"""The K-class hand-back's stack and the readings of the LLM's scores through the labeled rows.

:class:`SharedStack` combines the LLM's evidence, the refined score and the probe's log-probabilities (coefficients
shared by all classes, optionally a per-class bias and a per-class (K x K) reading of the LLM's evidence);
:func:`calibrated_labels` is round 0 from the LLM's scores with a shared scale and per-class offsets fitted on the
labeled rows. Both are fitted on ~50 labeled rows and judged out of fold (:func:`oof`).
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold

__all__ = ["SharedStack", "llm_evidence", "probe_logp", "calibrated_labels", "oof", "confident_flips"]

def llm_evidence(llm, s, K) -> np.ndarray:
    """The stack's LLM input: the per-class scores centred per row, or (no scores) the one-hot LLM label centred."""
    E = np.asarray(llm, dtype=np.float64) if llm is not None else np.eye(K)[np.asarray(s, dtype=np.int64)]
    return E - E.mean(1, keepdims=True)


class SharedStack:
    """``logit_c = a * E_c + b * Z_c [+ g * P_c] [+ beta_c] [+ (D E)_c]``: the LLM evidence ``E``, the refined score
    ``Z`` (and optionally the labeled-row probe's log-probability ``P``) of each class with coefficients shared by
    all classes (multinomial likelihood on the labeled rows, a small L2 penalty), optionally a per-class bias
    ``beta`` (penalised by ``bias_l2``; the class prior the shared coefficients cannot express), and optionally a
    per-class reading of the LLM's evidence ``D`` (``llm_l2``; ``llm_mode`` "diag": class ``c``'s own evidence
    gets its own coefficient ``a + d_c``; "full": a K x K matrix ``a I + D``, each class's logit reads every
    class's evidence), penalised towards the shared ``a``: what each one-vs-rest refiner has on its class's
    score. Without the bias and ``D`` the parameters do not grow with K: it can be fitted on ~50 labeled rows even
    when a class has one or none of them. ``a`` large and ``b`` small is the LLM; the reverse the refined
    classifier."""

    def __init__(self, l2: float = 1e-2, bias_l2: float | None = None, K: int | None = None,
                 anchor_l2: float | None = None, llm_l2: float | None = None, llm_mode: str = "diag"):
        self.l2, self.bias_l2, self.K, self.anchor_l2 = l2, bias_l2, K, anchor_l2
        self.llm_l2, self.llm_mode = llm_l2, llm_mode

    def _split(self, F):
        K = self.K_
        return [F[:, j * K:(j + 1) * K] for j in range(F.shape[1] // K)]

    def _n_dev(self):
        if self.llm_l2 is None:
            return 0
        return self.K_ * self.K_ if self.llm_mode == "full" else self.K_

    def _logits(self, w, F):
        blocks = self._split(F)
        m, K = len(blocks), self.K_
        out = sum(w[j] * B for j, B in enumerate(blocks))
        nb = K if self.bias_l2 is not None else 0
        if nb:
            out = out + w[m:m + nb]
        nd = self._n_dev()
        if nd:
            d = w[m + nb:m + nb + nd]
            out = out + (blocks[0] @ d.reshape(K, K).T if self.llm_mode == "full" else blocks[0] * d)
        return out

    def fit(self, F, y):
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        if self.llm_mode not in ("diag", "full"):
            raise ValueError(f"llm_mode must be 'diag' or 'full', not {self.llm_mode!r}")
        self.K_ = self.K or F.shape[1] // 2
        m = F.shape[1] // self.K_
        y = np.asarray(y, dtype=np.int64)
        nb = self.K_ if self.bias_l2 is not None else 0
        nd = self._n_dev()
        pen = np.concatenate([np.full(m, self.l2), np.full(nb, self.bias_l2 or 0.0), np.full(nd, self.llm_l2 or 0.0)])
        if self.anchor_l2 is not None:  # the inputs besides the LLM's evidence pay more: the LLM is the prior
            pen[1:m] = self.anchor_l2

        def nll(w):
            lp = log_softmax(self._logits(w, F), axis=1)
            return -lp[np.arange(y.size), y].mean() + float(pen @ (w * w))

        w = minimize(nll, np.concatenate([np.ones(m), np.zeros(nb + nd)]), method="L-BFGS-B").x
        self.coef_ = w[:m]
        self.bias_ = w[m:m + nb] if nb else np.zeros(self.K_)
        self.llm_dev_ = w[m + nb:m + nb + nd]
        self.classes_ = np.arange(self.K_)
        return self

    def _w(self):
        return np.concatenate([self.coef_, self.bias_ if self.bias_l2 is not None else [],
                               getattr(self, "llm_dev_", np.zeros(0)) if self.llm_l2 is not None else []])

    def predict_proba(self, F):
        from scipy.special import softmax

        return softmax(self._logits(self._w(), F), axis=1)

    def predict(self, F):
        return self.predict_proba(F).argmax(1)


def probe_logp(probe, X, K) -> np.ndarray:
    """The probe's centred log-probabilities in all K columns (a class it never saw: log 1e-4), for the stack."""
    P = np.full((X.shape[0], K), 1e-4)
    Xd = dense(X)
    P[:, probe.classes_] = np.clip(probe.predict_proba((Xd - probe.mean_) / probe.scale_), 1e-4, None)
    L = np.log(P)
    return L - L.mean(1, keepdims=True)


def oof(F, y, make, K, seed=0, *, proba=False) -> np.ndarray:
    """Out-of-fold predictions (10-fold, or leave-one-out for fewer rows) of a multinomial model on ``F``
    (``proba``: the probabilities in all K columns instead)."""
    out = np.zeros((y.size, K)) if proba else np.empty(y.size, dtype=np.int64)
    k = min(10, y.size)
    for tr, te in KFold(k, shuffle=True, random_state=seed).split(F):
        if np.unique(y[tr]).size < 2 and not isinstance(make(), SharedStack):
            if proba:
                out[np.ix_(te, [y[tr][0]])] = 1.0
            else:
                out[te] = y[tr][0]
            continue
        m = make().fit(F[tr], y[tr])
        if proba:
            out[np.ix_(te, m.classes_)] = m.predict_proba(F[te])
        else:
            out[te] = m.predict(F[te])
    return out


def confident_flips(base, P, rule, thresholds=None) -> np.ndarray:
    """``base`` labels with the rows the stack's probabilities ``P`` confidently contradict set to its argmax.

    ``rule``: ``("conf", t)`` flips a row where the argmax is not the base label and its probability is at least
    ``t``; ``("cj",)`` is the confident-joint rule of confident learning (Northcutt et al.): with per-class
    thresholds ``t_j`` = the mean of ``P[:, j]`` over the rows whose base label is ``j`` (``thresholds``, computed on
    the corpus, when given), a row labelled ``j`` is flipped to the argmax ``k`` when ``P[i, j] < t_j`` and
    ``P[i, k] >= t_k``. Returns the new labels (the base's elsewhere)."""
    base = np.asarray(base, dtype=np.int64)
    P = np.asarray(P, dtype=np.float64)
    top = P.argmax(1)
    rows = np.arange(base.size)
    if rule[0] == "conf":
        flip = (top != base) & (P[rows, top] >= rule[1])
    elif rule[0] == "cj":
        t = class_thresholds(base, P) if thresholds is None else thresholds
        flip = (top != base) & (P[rows, base] < t[base]) & (P[rows, top] >= t[top])
    else:
        raise ValueError(f"unknown flip rule {rule!r}: ('conf', t) or ('cj',)")
    return np.where(flip, top, base)


def class_thresholds(base, P) -> np.ndarray:
    """Per-class mean probability of the class over the rows labelled with it (1.0 for a class with none)."""
    base = np.asarray(base, dtype=np.int64)
    K = P.shape[1]
    return np.array([P[base == j, j].mean() if np.any(base == j) else 1.0 for j in range(K)])


def calibrated_labels(llm, s0, y_lab, lab, K, l2, seed=0):
    """Round 0 from the LLM's scores read through the labeled rows: ``argmax(a * E + beta)`` with a shared scale
    ``a`` and a per-class offset ``beta`` (L2 ``l2``) fitted on them, the K-class counterpart of the binary path's
    threshold fitted on the labeled rows. Returns the corpus labels, the labeled rows' out-of-fold labels (what
    ``T`` and the hand-back judge: a labeled row's own gold label never sets its own label) and the calibrator
    (a :class:`SharedStack` on the evidence alone, for new rows)."""
    E = llm_evidence(llm, s0, K)
    make = lambda: SharedStack(bias_l2=l2, K=K)  # noqa: E731
    cal = make().fit(E[lab], y_lab)
    return cal.predict(E), oof(E[lab], y_lab, make, K, seed), cal


def dense(X):
    return X.toarray() if hasattr(X, "toarray") else np.asarray(X, dtype=np.float64)
