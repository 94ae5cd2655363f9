"""Candidate labelings for the hand-back, and the paired-bootstrap choice between them.

Candidates are whole-corpus labelings: the LLM's labels (round 0), the refined labels (the last round),
a probe trained on the labeled rows alone, and a stack of the LLM's score with the refined classifier's
score. Each candidate comes with its correctness on every labeled row, computed honestly: in-sample only
for candidates that never saw the labeled rows' gold labels (LLM, refined), leave-one-out for the ones
fitted on them (probe, stack).

The default candidate is kept unless another beats it on the labeled rows in at least ``confidence`` of
paired bootstrap draws; 50 labels estimate an accuracy only to about +-6 points, so switching needs
evidence, not a lucky draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

__all__ = ["Candidate", "design_sample_weight", "fit_probe", "probe_decision", "probe_candidate", "probe_scores", "stack_candidate", "threshold_oof_correct",
           "threshold_oof_predict", "is_threshold_of", "select", "SPARSE_PROBE_C"]


@dataclass
class Candidate:
    """A corpus labeling with its per-row correctness on the labeled sample."""

    name: str
    corpus_labels: np.ndarray
    correct: np.ndarray
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def labeled_accuracy(self) -> float:
        return float(np.mean(self.correct))


def design_sample_weight(weights) -> np.ndarray | None:
    """The labeled rows' ``sample_weight`` for the fits on them (stack, probe, Platt) from their design weights
    (inverse inclusion probabilities): scaled to mean 1, so a regularisation strength ``C`` means what it means
    unweighted. ``None`` (fit unweighted, as for a uniform sample) when there are none or all are equal."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or np.ptp(w) <= 1e-12 * np.max(np.abs(w)):
        return None
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("design weights must be finite and positive")
    return w / w.mean()


def _fit(model, F, y, sample_weight=None):
    """``model.fit`` with ``sample_weight`` only when there is one (unweighted fits stay as they were)."""
    return model.fit(F, y) if sample_weight is None else model.fit(F, y, sample_weight=sample_weight)


def _loo_predict(F_lab: np.ndarray, y: np.ndarray, make, *, max_folds: int = 10,
                 sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold predictions of a model refitted without each fold of labeled rows.

    Leave-one-out up to ``max_folds`` rows, stratified k-fold beyond (each row is predicted by a model
    that never saw its gold label either way). ``sample_weight``: the rows' weights in each refit.
    """
    out = np.empty(y.size, dtype=np.int64)
    if y.size <= max_folds:
        folds = [np.array([i]) for i in range(y.size)]
    else:
        from sklearn.model_selection import StratifiedKFold

        k = min(max_folds, int(np.bincount(y).min())) if np.unique(y).size == 2 else 2
        k = max(k, 2)
        folds = [test for _, test in StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(y.size), y)]
    for test in folds:
        m = np.ones(y.size, dtype=bool)
        m[test] = False
        if np.unique(y[m]).size < 2:
            out[test] = int(y[m][0])
            continue
        sw = None if sample_weight is None else sample_weight[m]
        out[test] = _fit(make(), F_lab[m], y[m], sw).predict(F_lab[test])
    return out


def threshold_oof_predict(score_lab: np.ndarray, y_lab: np.ndarray, *, max_folds: int = 10) -> np.ndarray:
    """Out-of-fold labels of the labeled rows from a threshold on the LLM score fitted on the other folds.

    An LLM threshold chosen to maximise accuracy on the labeled rows (``silr annotate --threshold accuracy``)
    makes the LLM look better on those same rows than on the corpus. Here each fold's threshold is the
    accuracy-maximising one on the other folds.
    """

    class _Thr:
        def fit(self, F, y):
            v = np.sort(np.unique(F[:, 0]))
            cuts = np.concatenate([[v[0] - 1.0], (v[:-1] + v[1:]) / 2, [v[-1] + 1.0]])
            acc = [np.mean((F[:, 0] > c) == y) for c in cuts]
            self.t = cuts[int(np.argmax(acc))]
            return self

        def predict(self, F):
            return (F[:, 0] > self.t).astype(np.int64)

    F = np.asarray(score_lab, dtype=np.float64)[:, None]
    return _loo_predict(F, np.asarray(y_lab), _Thr, max_folds=max_folds)


def threshold_oof_correct(score_lab: np.ndarray, y_lab: np.ndarray, *, max_folds: int = 10) -> np.ndarray:
    """Out-of-fold correctness of the LLM's labels when their threshold is fitted on the labeled rows
    (see :func:`threshold_oof_predict`)."""
    return threshold_oof_predict(score_lab, y_lab, max_folds=max_folds) == np.asarray(y_lab)


def is_threshold_of(labels: np.ndarray, score: np.ndarray) -> bool:
    """Whether 0/1 ``labels`` are ``score > t`` for some cut ``t`` (every positive scores above every negative)."""
    labels, score = np.asarray(labels), np.asarray(score, dtype=np.float64)
    if labels.min() == labels.max():
        return True
    return bool(score[labels == 0].max() <= score[labels == 1].min())


#: C of the probe on sparse (TF-IDF, unit-norm rows) features: C=1 underfits 50 rows badly there
SPARSE_PROBE_C = 10.0


def _probe_C(X) -> float:
    return SPARSE_PROBE_C if sp.issparse(X) else 1.0


def _probe_features(probe: dict, X):
    """The probe's view of ``X``: standardised dense rows (with the labeled rows' mean and scale), raw sparse."""
    if sp.issparse(X):
        return X
    return (np.asarray(X, dtype=np.float64) - probe["mean"]) / probe["scale"]


def fit_probe(X_lab, y_lab: np.ndarray, sample_weight: np.ndarray | None = None) -> dict:
    """The probe: logistic regression on the labeled rows alone (standardised dense features with C=1; raw
    sparse features with ``SPARSE_PROBE_C``). Returns plain arrays (``mean``, ``scale``, ``coef``,
    ``intercept``) so it saves as safetensors + JSON. ``sample_weight``: the rows' design weights
    (:func:`design_sample_weight`; ``None``: unweighted)."""
    d = X_lab.shape[1]
    if sp.issparse(X_lab):
        mean, scale = np.zeros(d), np.ones(d)
    else:
        Xd = np.asarray(X_lab, dtype=np.float64)
        sd = Xd.std(0)
        mean, scale = Xd.mean(0), np.where(sd > 0, sd, 1.0)
    probe = {"mean": mean, "scale": scale}
    lr = _fit(LogisticRegression(C=_probe_C(X_lab), max_iter=2000), _probe_features(probe, X_lab), y_lab, sample_weight)
    probe.update(coef=lr.coef_[0].astype(np.float64), intercept=float(lr.intercept_[0]))
    return probe


def probe_decision(probe: dict, X, *, chunk: int = 65536) -> np.ndarray:
    """The probe's decision value (logit) on ``X``, in chunks."""
    if sp.issparse(X):
        return np.asarray(X @ probe["coef"]).ravel() + probe["intercept"]
    return np.concatenate([_probe_features(probe, X[s : s + chunk]) @ probe["coef"] + probe["intercept"]
                           for s in range(0, X.shape[0], chunk)]) if X.shape[0] else np.zeros(0)


def probe_candidate(X_lab, y_lab: np.ndarray, X, sample_weight: np.ndarray | None = None) -> Candidate:
    """The probe (:func:`fit_probe`) applied to the corpus, with out-of-fold correctness on the labeled rows."""
    probe = fit_probe(X_lab, y_lab, sample_weight)
    pred = (probe_decision(probe, X) > 0).astype(np.int8)
    C = _probe_C(X_lab)
    loo = _loo_predict(_probe_features(probe, X_lab), y_lab, lambda: LogisticRegression(C=C, max_iter=2000),
                       sample_weight=sample_weight)
    return Candidate("probe", pred, loo == y_lab, "logistic regression on the labeled rows alone")


def probe_scores(X_lab, y_lab: np.ndarray, X, *, max_folds: int = 10, sample_weight: np.ndarray | None = None):
    """The probe as a score: its decision value on the corpus (fitted on every labeled row) and, for the
    labeled rows, out-of-fold decision values (each row scored by a probe that never saw it). Returns
    ``(corpus_scores, labeled_oof_scores, probe)`` (the fitted :func:`fit_probe` dict, to apply it later)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y_lab).astype(np.int64)
    probe = fit_probe(X_lab, y, sample_weight)
    F_lab, C = _probe_features(probe, X_lab), _probe_C(X_lab)
    k = max(2, min(max_folds, int(np.bincount(y, minlength=2).min())))
    oof = np.zeros(y.size)
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(y.size), y):
        if np.unique(y[tr]).size < 2:
            continue
        sw = None if sample_weight is None else sample_weight[tr]
        oof[te] = _fit(LogisticRegression(C=C, max_iter=2000), F_lab[tr], y[tr], sw).decision_function(F_lab[te])
    return probe_decision(probe, X), oof, probe


def stack_candidate(
    llm_score: np.ndarray, llm_score_lab: np.ndarray, clf_score: np.ndarray | None, clf_score_lab: np.ndarray | None,
    y_lab: np.ndarray, *, probe_score: np.ndarray | None = None, probe_score_lab: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> Candidate:
    """Logistic regression of the gold label on (LLM score[, refined classifier score][, probe score]), fitted
    on the labeled rows.

    The scores are standardised with their corpus mean and standard deviation. The coefficients are kept
    so the stack can be applied to new texts that carry an LLM score. The probe's score on the labeled rows
    must be out of fold (:func:`probe_scores`), or the stack would trust the probe's in-sample fit.
    ``clf_score=None``: no refined classifier (the loop did not start): the stack of the LLM's evidence and the
    probe alone. ``sample_weight``: the labeled rows' design weights (:func:`design_sample_weight`; ``None``:
    unweighted).
    """
    if clf_score is None and probe_score is None:
        raise ValueError("a stack needs the refined score, the probe's score or both besides the LLM's evidence")
    cols, cols_lab = [llm_score], [llm_score_lab]
    if clf_score is not None:
        cols.append(clf_score)
        cols_lab.append(clf_score_lab)
    if probe_score is not None:
        cols.append(probe_score)
        cols_lab.append(probe_score_lab)
    mu = np.array([np.mean(c) for c in cols])
    sd = np.array([np.std(c) or 1.0 for c in cols])
    F = (np.column_stack(cols) - mu) / sd
    F_lab = (np.column_stack(cols_lab) - mu) / sd

    def make():
        return LogisticRegression(C=1.0)

    model = _fit(make(), F_lab, y_lab, sample_weight)
    pred = model.predict(F)
    loo = _loo_predict(F_lab, y_lab, make, sample_weight=sample_weight)
    coef = {
        "mean": mu.tolist(),
        "std": sd.tolist(),
        "coef": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
        "probe": probe_score is not None,
        "refined": clf_score is not None,
    }
    w = model.coef_[0]
    what = "(" + ", ".join(["LLM evidence"] + (["refined score"] if clf_score is not None else [])
                           + (["probe score"] if probe_score is not None else [])) + ")"
    return Candidate(
        "stack",
        pred.astype(np.int8),
        loo == y_lab,
        f"logistic regression on {what}, weights " + " / ".join(f"{v:.2f}" for v in w),
        {"stack": coef},
    )


def select(
    candidates: list[Candidate], default: str, *, confidence: float = 0.9, n_bootstrap: int = 2000, seed: int = 0,
    weights: np.ndarray | None = None,
) -> tuple[Candidate, str, dict]:
    """Keep ``default`` unless another candidate beats it on the labeled rows in ``confidence`` of paired draws.

    ``weights``: design weights of the labeled rows (``silr sample``: inverse inclusion probabilities); each draw's
    accuracy difference is then the weighted mean over the drawn rows (``None``: the plain mean, a uniform sample).

    Returns ``(chosen, reason, table)`` where ``table[name]`` has the labeled accuracy, the probability of
    beating the default, and the candidate's note.
    """
    by = {c.name: c for c in candidates}
    base = by[default]
    n = base.correct.size
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    table = {}
    contenders = []
    for c in candidates:
        d = c.correct[idx].astype(float) - base.correct[idx].astype(float)
        diff = d.mean(1) if weights is None else (d * weights[idx]).sum(1) / weights[idx].sum(1)
        p = float(np.mean(diff > 0)) if c.name != default else None
        table[c.name] = {
            "labeled_accuracy": c.labeled_accuracy,
            "n_right": int(c.correct.sum()),
            "prob_better_than_default": p,
            "note": c.note,
        }
        if p is not None and p >= confidence:
            contenders.append(c)
    summary = ", ".join(f"{c.name} {int(c.correct.sum())}/{n}" for c in candidates)
    if not contenders:
        ahead = [c.name for c in candidates if c.name != default and c.correct.sum() > base.correct.sum()]
        return base, (
            f"'{default}' kept (the default): no other candidate is better on the labeled rows in {confidence:.0%} of "
            f"paired bootstrap draws (right on: {summary}"
            + (f"; {' and '.join(ahead)} right on more of them, but not reliably" if ahead else "") + ")"
        ), table
    best = max(contenders, key=lambda c: (c.labeled_accuracy, -[x.name for x in candidates].index(c.name)))
    return best, (
        f"'{best.name}' chosen over '{default}': better on the labeled rows in "
        f"{table[best.name]['prob_better_than_default']:.0%} of paired bootstrap draws (right on: {summary})"
    ), table
