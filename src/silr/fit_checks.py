"""Checks of what :class:`silr.refine.SelfIterativeRefiner` is given: features or texts, the pseudo-labels ``y``,
the gold labels ``y_gold`` (``-1`` where unknown) and the LLM's scores.

Labels may be any two values (``0/1``, ``-1/1``, strings); they are coded 0/1 inside (``classes_[1]`` is the
positive class) and mapped back on output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_consistent_length, column_or_1d, validate_data

from silr.priors import RefinementError

__all__ = ["FitInputs", "check_fit_inputs", "check_predict_X", "takes_texts", "merge_labeled"]

#: sparse layouts the learners index rows of (others are converted)
SPARSE_FORMATS = ("csr", "csc")


def takes_texts(learner, X) -> bool:
    """Whether the learner consumes texts (a fine-tuning learner) rather than feature arrays.

    A learner says so with a ``takes_texts`` attribute; without one, a 1-D sequence of strings is texts. The
    default head (``learner=None``) always takes arrays.
    """
    if learner is None:
        return False
    flag = getattr(learner, "takes_texts", None)
    if flag is not None:
        return bool(flag)
    if isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.ndim == 1):
        return len(X) > 0 and isinstance(X[0], str)
    return False


@dataclass
class FitInputs:
    """The checked inputs of one fit: the corpus ``X`` and round-0 codes ``s0`` (0/1), the labeled rows
    ``lab`` (indices, in corpus order) with their features, gold and round-0 codes, and the LLM scores."""

    X: object
    classes: np.ndarray
    s0: np.ndarray
    lab: np.ndarray
    X_lab: object
    y_lab: np.ndarray
    s_lab: np.ndarray
    llm: np.ndarray | None
    llm_lab: np.ndarray | None

    @property
    def has_gold(self) -> bool:
        return self.lab.size > 0


def _unknown_mask(g: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Entries of ``y_gold`` that are unknown: -1 (unless -1 is a class), NaN, None or an empty string (unless ''
    is a class)."""
    minus_one_is_class = bool(np.any([_is_minus_one(c) for c in classes]))
    if g.dtype.kind in "biuf":
        m = np.isnan(g) if g.dtype.kind == "f" else np.zeros(g.shape, dtype=bool)
        return m | (g == -1) if not minus_one_is_class else m
    import pandas as pd

    m = np.asarray(pd.isna(g), dtype=bool)
    if not minus_one_is_class:
        m |= np.array([_is_minus_one(v) for v in g], dtype=bool)
    if not any(isinstance(c, str) and not c.strip() for c in classes.tolist()):
        m |= np.array([isinstance(v, str) and not v.strip() for v in g], dtype=bool)
    return m


def _is_minus_one(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v == -1


def check_fit_inputs(est, X, y, y_gold, llm_score, *, texts: bool) -> FitInputs:
    """Validate ``fit``'s inputs (scikit-learn's ``validate_data`` for arrays; lengths for texts)."""
    if texts:
        if isinstance(X, str) or not hasattr(X, "__len__"):
            raise ValueError("X must be a sequence of texts for a learner that takes texts")
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
    else:
        X, y = validate_data(est, X, y, accept_sparse=SPARSE_FORMATS)
    check_classification_targets(y)
    classes = np.unique(y)
    if classes.size < 2:
        raise RefinementError(
            f"y (the pseudo-labels) has one class only ({classes.tolist()[0]!r} on all {len(y)} rows): the refinement "
            "needs both classes among the pseudo-labels"
            + ("; they are an LLM score cut at one threshold, which puts every row on one side: re-cut the score (e.g. "
               "`silr annotate --threshold prior`, the labeled rows' positive rate) or check the label words"
               if llm_score is not None else ""))
    y_type = type_of_target(y, input_name="y")
    # per-class scores of K > 2 classes: K classes even where the LLM's labels name only two of them (the labeled
    # rows name the others, and round 0 reads the scores)
    k_scores = llm_score is not None and np.ndim(llm_score) == 2 and np.shape(llm_score)[1] > 2
    if (y_type == "multiclass" or (y_type == "binary" and k_scores)) and not texts and getattr(est, "_accepts_kclass", False):
        return _check_kclass(X, y, classes, y_gold, llm_score)
    if y_type != "binary":
        raise ValueError(
            f"Only binary classification is supported. The type of the target is {y_type}: y has "
            f"{classes.size} classes ({', '.join(map(repr, classes.tolist()[:5]))}{' ...' if classes.size > 5 else ''})")
    n = len(y)
    s0 = (y == classes[1]).astype(np.int8)
    if y_gold is None:
        lab = np.zeros(0, dtype=np.int64)
        y_lab = np.zeros(0, dtype=np.int8)
    else:
        g = np.asarray(y_gold)
        if g.ndim != 1 or g.shape[0] != n:
            raise ValueError(f"y_gold has shape {g.shape}; expected ({n},): one entry per row of X, -1 where unknown")
        unknown = _unknown_mask(g, classes)
        known = ~unknown
        bad = known & ~np.isin(g, classes)
        if bad.any():
            raise ValueError(
                f"y_gold has values such as {g[bad][:3].tolist()} (rows {np.flatnonzero(bad)[:3].tolist()}) that are "
                f"neither a class of y ({classes.tolist()}) nor -1 (unknown)")
        lab = np.flatnonzero(known)
        y_lab = (g[lab] == classes[1]).astype(np.int8)
    llm = llm_lab = None
    if llm_score is not None:
        llm = np.asarray(llm_score, dtype=np.float64)
        if llm.shape != (n,):
            raise ValueError(f"llm_score has shape {llm.shape}; expected ({n},), one score per row of X")
        if not np.isfinite(llm).all():
            raise ValueError("llm_score must be finite (drop abstained rows first)")
        llm_lab = llm[lab]
    X_lab = _safe_indexing(X, lab) if lab.size else _safe_indexing(X, lab[:0])
    return FitInputs(X, classes, s0, lab, X_lab, y_lab, s0[lab], llm, llm_lab)


def _check_kclass(X, y, classes, y_gold, llm_score) -> FitInputs:
    """The K > 2 case of :func:`check_fit_inputs`: codes ``0..K-1`` in ``classes`` order; ``llm_score`` is
    ``(n, K)`` (per-class scores, e.g. log-probabilities) when given."""
    n = len(y)
    lab = np.zeros(0, dtype=np.int64)
    g = None
    if y_gold is not None:
        g = np.asarray(y_gold)
        if g.ndim != 1 or g.shape[0] != n:
            raise ValueError(f"y_gold has shape {g.shape}; expected ({n},): one entry per row of X, -1 where unknown")
        lab = np.flatnonzero(~_unknown_mask(g, classes))
        try:  # a class the LLM never predicted may still appear among the gold labels: it is a class too
            g_lab = g[lab].astype(classes.dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"y_gold's values {g[lab][:3].tolist()} do not compare with y's classes "
                             f"({classes.tolist()[:5]})") from e
        if lab.size and not np.isin(g_lab, classes).any():  # e.g. codes 0/1/2 beside names: 2K classes, half empty
            raise ValueError(f"y_gold's classes ({', '.join(map(str, np.unique(g_lab)[:5].tolist()))}) are none of y's "
                             f"({', '.join(map(str, classes.tolist()[:5]))}): name the classes alike in y and y_gold")
        classes = np.unique(np.concatenate([classes, g_lab]))
    K = classes.size
    s0 = np.searchsorted(classes, y).astype(np.int64)
    y_lab = np.searchsorted(classes, g[lab].astype(classes.dtype)).astype(np.int64) if g is not None else lab
    llm = llm_lab = None
    if llm_score is not None:
        llm = np.asarray(llm_score, dtype=np.float64)
        if llm.shape != (n, K):
            raise ValueError(f"llm_score has shape {llm.shape}; with K={K} classes expected ({n}, {K}): one score per "
                             "row of X and class (columns in sorted class order)")
        if not np.isfinite(llm).all():
            raise ValueError("llm_score must be finite (drop abstained rows first)")
        llm_lab = llm[lab]
    X_lab = _safe_indexing(X, lab)
    return FitInputs(X, classes, s0, lab, X_lab, y_lab, s0[lab], llm, llm_lab)


def check_predict_X(est, X):
    """``X`` for ``predict``/``decision_function``: validated like in ``fit`` (same number of features)."""
    if getattr(est, "takes_texts_", False):
        return X
    return validate_data(est, X, accept_sparse=SPARSE_FORMATS, reset=False)


def merge_labeled(X, y, X_lab, y_gold_lab, y_lab, *, keys=None, labeled_keys=None, llm_score=None, llm_score_lab=None):
    """One ``fit`` input from a corpus and a separate labeled sample: ``(X, y, y_gold, llm_score)``.

    A labeled row whose key (its text) is a corpus row's, with the same pseudo-label (and LLM score), marks
    that corpus row (the first one with the key not marked yet); any other labeled row is appended after the
    corpus. The corpus rows keep their order and come first, so the first ``len(y)`` outputs are the corpus's.
    """
    y = np.asarray(y)
    y_lab = np.asarray(y_lab)
    n, m = y.size, y_lab.size
    where: dict = {}
    if keys is not None and labeled_keys is not None:
        for i, k in enumerate(keys):
            where.setdefault(k, []).append(i)
    gold = np.full(n, -1, dtype=np.int64)
    extra = []
    for j in range(m):
        rows = where.get(labeled_keys[j], []) if labeled_keys is not None else []
        i = next((i for i in rows if gold[i] == -1), None)
        same = i is not None and y[i] == y_lab[j] and (llm_score is None or llm_score[i] == llm_score_lab[j])
        if same:
            gold[i] = y_gold_lab[j]
        else:
            extra.append(j)
    if not extra:
        return X, y, gold, llm_score
    idx = np.asarray(extra)
    Xe = _safe_indexing(X_lab, idx)
    if hasattr(X, "tocsr"):
        import scipy.sparse as sp

        X_all = sp.vstack([X, Xe], format="csr")
    elif isinstance(X, list):
        X_all = X + list(Xe)
    else:
        X_all = np.concatenate([np.asarray(X), np.asarray(Xe)])
    y_all = np.concatenate([y, y_lab[idx]])
    gold_all = np.concatenate([gold, np.asarray(y_gold_lab)[idx]])
    llm_all = None if llm_score is None else np.concatenate([llm_score, np.asarray(llm_score_lab)[idx]])
    return X_all, y_all, gold_all, llm_all
