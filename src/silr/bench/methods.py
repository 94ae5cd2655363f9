"""The methods the benchmark compares, all on the same inputs of one task: one registry, :data:`REGISTRY`.

Every method gets the corpus features ``Xc`` and test features ``Xt``, the corpus pseudo-labels ``s``, the
indices of the labeled corpus rows (the only gold it may read, except the reference methods), and the
LLM's *evidence* on every corpus and test row: the LLM's real-valued score in the real-LLM track, the
pseudo-label itself in the controlled-noise track. On the test split every method reads the same inputs
(features + evidence): the baselines get the evidence as one more, standardised, feature column; the silr
methods read it through the refiner's stack (``llm_score``) and are all scored the same way.

Adding a method is one entry in :data:`REGISTRY` (a :class:`MethodSpec`: label, runner, reference flag).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["MethodResult", "MethodSpec", "REGISTRY", "METHODS", "REFERENCE_METHODS", "SILR_FAMILY", "run_method",
           "Inputs", "oracle_prior_fn", "logreg", "logreg_small", "with_evidence", "fit_refiner"]


@dataclass
class MethodResult:
    method: str
    corpus_pred: np.ndarray | None
    test_pred: np.ndarray | None
    rounds: list[dict] = field(default_factory=list)  # per round: corpus_acc, test_acc, priors ...
    info: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Inputs:
    """What one run gives every method. ``ev``/``ev_test``: the LLM's evidence on the corpus / test rows;
    ``llm_scores``: True when the evidence is a real-valued LLM score (real-LLM track), False when it is the
    pseudo-label (controlled-noise track)."""

    Xc: object
    Xt: object
    s: np.ndarray
    s_test: np.ndarray  # the LLM's labels of the test rows (its score cut at the same threshold)
    lab: np.ndarray
    y_corpus: np.ndarray  # read only at ``lab`` (and by the reference methods)
    y_test: np.ndarray  # never read by a method (scoring happens in the runner)
    ev: np.ndarray
    ev_test: np.ndarray
    llm_scores: bool
    seed: int
    silr_params: dict


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str  # column header in RESULTS.md
    run: Callable[[Inputs], MethodResult]
    reference: bool = False  # reads gold beyond the labeled rows (not a contender)
    silr: bool = False  # a configuration of the refiner (reports what it handed back)
    reads_evidence: bool = True  # uses the test rows' evidence (False: given it, but reads features only)
    description: str = ""


# ----------------------------------------------------------------------------------------------------------
def logreg(X, *, class_weight=None, C: float = 1.0, seed: int = 0):
    """The logistic regression the sklearn baselines use: scikit-learn's defaults (L2, C=1, lbfgs) on the
    features as they are (plus the standardised evidence column). The same model on all gold labels is the
    clean ceiling."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight=class_weight, max_iter=3000, random_state=seed)


def logreg_small(X, *, seed: int = 0):
    """Logistic regression for the 50-label baselines: standardised dense features, C=1 (scikit-learn's
    defaults on raw unit-norm embeddings predict one class from 50 rows), or raw sparse features with C=10
    (the refiner's probe uses the same settings)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if sp.issparse(X):
        return LogisticRegression(C=10.0, max_iter=3000, random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=seed))


def with_evidence(X, ev: np.ndarray, ref: np.ndarray):
    """``X`` with the evidence appended as one column, standardised by the corpus evidence ``ref`` (label-free)."""
    ref = np.asarray(ref, dtype=np.float64)
    sd = ref.std()
    col = ((np.asarray(ev, dtype=np.float64) - ref.mean()) / (sd if sd > 0 else 1.0))[:, None]
    if sp.issparse(X):
        return sp.hstack([X, sp.csr_matrix(col)], format="csr")
    return np.hstack([np.asarray(X, dtype=np.float64), col])


def oracle_prior_fn(y_corpus: np.ndarray):
    """``prior_fn`` for the refiner that reads the corpus gold (benchmark reference only)."""
    from silr.priors import Interval, PriorEstimate

    y = np.asarray(y_corpus).astype(np.float64)

    def fn(r: int, s: np.ndarray) -> PriorEstimate:
        s = np.asarray(s)
        rho = float(np.mean(s))
        tp = float(y[s == 1].mean()) if (s == 1).any() else 0.5
        tn = float(y[s == 0].mean()) if (s == 0).any() else 0.5
        acc = float(np.mean(s == y))
        iv = {k: Interval(v, v) for k, v in (("pi", y.mean()), ("theta_p", tp), ("theta_n", tn), ("accuracy", acc),
                                              ("gap", tp - tn))}
        return PriorEstimate(pi=float(y.mean()), theta_p=tp, theta_n=tn, accuracy=acc, pseudo_positive_rate=rho,
                             intervals=iv, n_labeled=int(y.size), n_labeled_pseudo_positive=int(s.sum()))

    return fn


def _silr_round_predictions(model, Xt) -> list[np.ndarray]:
    """Test-split labels of the refined classifier after each kept round (the per-round curves only)."""
    outs, z = [], None
    for j, (lr, sc) in enumerate(zip(model.learners_, model.scales_), start=1):
        g = np.asarray(lr.decision_function(Xt), dtype=np.float64) / sc
        if model.aggregate == "running_mean":
            z = g if z is None else z + g
            outs.append((z / j > 0).astype(np.int8))
        else:
            outs.append((g > 0).astype(np.int8))
    return outs


def fit_refiner(model, Xc, s, lab, y_lab, *, llm_score=None, prior_fn=None):
    """Fit a ``SelfIterativeRefiner`` on the corpus with the labeled rows ``lab`` (gold ``y_lab``; every other row's
    ``y_gold`` is -1)."""
    kw = {} if prior_fn is None else {"prior_fn": prior_fn}
    y_gold = np.full(s.size, -1, dtype=np.int64)
    y_gold[lab] = y_lab
    return model.fit(Xc, s, y_gold=y_gold, llm_score=llm_score, **kw)


def _source(model) -> str:
    src = getattr(model, "final_source_", "refined")
    return str(getattr(src, "value", src))


def run_silr(inp: Inputs, *, params: dict | None = None, oracle: bool = False) -> MethodResult:
    """The refiner on the corpus. Real-LLM track: it reads the corpus LLM scores (its stack's input) and the
    handed-back model is scored with the test rows' scores; noise track: the stack reads the pseudo-labels and
    the handed-back model is scored with the test rows' pseudo-labels. Every silr configuration is scored so."""
    from silr import refine

    p = {**inp.silr_params, **(params or {})}
    # head settings in p ("epochs") become the refiner's learner (engines before the learner object took
    # them as the refiner's own parameters)
    make = getattr(refine, "refiner_from_params", refine.SelfIterativeRefiner)
    model = make(seed=inp.seed, **p)
    RefinementError = refine.RefinementError
    y_corpus, y_test = inp.y_corpus, inp.y_test
    prior_fn = oracle_prior_fn(y_corpus) if oracle else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_refiner(model, inp.Xc, inp.s, inp.lab, y_corpus[inp.lab], prior_fn=prior_fn,
                        llm_score=inp.ev if inp.llm_scores else None)
    except RefinementError as e:  # the refiner refuses to start: the LLM's labels are handed back
        return MethodResult("", inp.s.copy(), np.asarray(inp.s_test).astype(np.int8),
                            info={"refused": str(e), "final_source": "llm"})
    source = _source(model)
    if source == "llm":
        # the LLM's own labels are handed back, on new inputs too
        test_pred = np.asarray(inp.s_test).astype(np.int8)
    else:
        test_pred = np.asarray(model.predict(inp.Xt, llm_score=np.asarray(inp.ev_test, dtype=np.float64))).astype(np.int8)
    test_by_round = _silr_round_predictions(model, inp.Xt)
    rounds = []
    for r in range(model.n_rounds_ + 1):
        rec = {"round": r, "corpus_acc": float(np.mean(model.labels_[r] == y_corpus))}
        if r >= 1 and r - 1 < len(test_by_round):
            rec["test_acc"] = float(np.mean(test_by_round[r - 1] == y_test))
        pr = model.priors_[r]
        rec.update({"est_accuracy": pr.accuracy, "pi": pr.pi, "theta_p": pr.theta_p, "theta_n": pr.theta_n})
        s_r = model.labels_[r]
        rec["true_theta_p"] = float(y_corpus[s_r == 1].mean()) if (s_r == 1).any() else None
        rec["true_theta_n"] = float(y_corpus[s_r == 0].mean()) if (s_r == 0).any() else None
        if r >= 1:
            rr = model.rounds_[r]
            rec["best_epoch"] = rr.get("best_epoch")
            rec["n_changed"] = rr.get("n_changed")
        rounds.append(rec)
    stop = getattr(model, "stop_reason_", None)
    info = {"final_round": int(model.final_round_), "predict_round": int(model.predict_round_),
            "n_rounds": int(model.n_rounds_), "stop_reason": str(getattr(stop, "value", stop)),
            "selection": getattr(model, "selection_reason_", None),
            "rejected_rounds": sum(bool(r.get("rejected")) for r in model.rounds_),
            "final_source": source, "stack_input": getattr(model, "stack_input_", None)}
    return MethodResult("", np.asarray(model.transduction_).copy(), test_pred, rounds=rounds, info=info)


# ----------------------------------------------------------------------------------------------------------
def _pseudo(inp: Inputs) -> MethodResult:
    return MethodResult("", inp.s.copy(), np.asarray(inp.s_test).astype(np.int8))


def _sk(fit_predict):
    """A scikit-learn baseline on (features + standardised evidence column)."""

    def run(inp: Inputs) -> MethodResult:
        Fc, Ft = with_evidence(inp.Xc, inp.ev, inp.ev), with_evidence(inp.Xt, inp.ev_test, inp.ev)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc, pt, info = fit_predict(inp, Fc, Ft)
        return MethodResult("", np.asarray(pc), np.asarray(pt), info=info or {})

    return run


def _lr_balanced(inp, Fc, Ft):
    m = logreg(Fc, class_weight="balanced", seed=inp.seed).fit(Fc, inp.s)
    return m.predict(Fc), m.predict(Ft), None


def _cleanlab(inp, Fc, Ft):
    from cleanlab.classification import CleanLearning

    m = CleanLearning(logreg(Fc, seed=inp.seed), seed=inp.seed, verbose=False).fit(Fc, inp.s)
    return m.predict(Fc), m.predict(Ft), {"issues": int(m.label_issues_df["is_label_issue"].sum())}


def _self_training(inp, Fc, Ft):
    from sklearn.semi_supervised import SelfTrainingClassifier

    y_semi = np.full(inp.s.size, -1, dtype=np.int64)
    y_semi[inp.lab] = inp.y_corpus[inp.lab]
    m = SelfTrainingClassifier(logreg_small(Fc, seed=inp.seed)).fit(Fc, y_semi)
    return m.predict(Fc), m.predict(Ft), None


def _lr_50(inp, Fc, Ft):
    m = logreg_small(Fc, seed=inp.seed).fit(Fc[inp.lab], inp.y_corpus[inp.lab])
    return m.predict(Fc), m.predict(Ft), None


def _lr_50_features(inp: Inputs) -> MethodResult:
    """LR on the 50 labels, features only: the same model as the refiner's probe (what silr hands back when
    it hands back the probe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = logreg_small(inp.Xc, seed=inp.seed).fit(inp.Xc[inp.lab], inp.y_corpus[inp.lab])
    return MethodResult("", m.predict(inp.Xc), m.predict(inp.Xt))


def _ceiling(inp, Fc, Ft):
    m = logreg(Fc, seed=inp.seed).fit(Fc, inp.y_corpus)
    return m.predict(Fc), m.predict(Ft), None


REGISTRY: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("llm", "pseudo-labels", _pseudo, description="the LLM's labels: real-LLM track, its score cut at the threshold fitted on the seed's 50 labeled rows; noise track, the simulated pseudo-labels"),
        MethodSpec("silr", "silr", lambda i: run_silr(i), silr=True,
                   description="SelfIterativeRefiner with the bench's parameters, priors from the 50 labeled rows; it hands back the LLM labels, the refined classifier, a stack (LLM evidence, refined score, probe score) or the probe on the 50 rows, chosen on the 50 rows by a paired bootstrap"),
        MethodSpec("silr_oracle", "silr oracle priors*", lambda i: run_silr(i, oracle=True), reference=True,
                   silr=True, description="the same with priors read off the corpus gold every round (reference)"),
        MethodSpec("uu", "plain UU", lambda i: run_silr(i, params={"risk": "uu", "later_risk": "uu"}), silr=True,
                   description="the refiner with the plain UU risk every round (same hand-back)"),
        MethodSpec("pn", "PN on pseudo", lambda i: run_silr(i, params={"risk": "pn", "later_risk": "pn", "rounds": 1,
                                                                       "selection": "last"}), silr=True,
                   reads_evidence=False, description="the refiner's head with the unweighted PN risk on the pseudo-labels, one round, that round handed back"),
        MethodSpec("lr_balanced", "balanced LR", _sk(_lr_balanced),
                   description="scikit-learn LogisticRegression (C=1), class_weight='balanced', on the pseudo-labels; features + evidence"),
        MethodSpec("cleanlab", "cleanlab", _sk(_cleanlab),
                   description="cleanlab CleanLearning(LogisticRegression) on the pseudo-labels; features + evidence"),
        MethodSpec("self_training", "self-training (50)", _sk(_self_training),
                   description="scikit-learn SelfTrainingClassifier(standardised LogisticRegression) from the 50 labels and the unlabeled corpus; features + evidence"),
        MethodSpec("lr_50", "LR on 50 labels", _sk(_lr_50),
                   description="standardised LogisticRegression (C=1; raw with C=10 on sparse n-grams) on the 50 labeled rows; features + evidence"),
        MethodSpec("lr_50_features", "LR on 50 labels, features only (= silr's probe)", _lr_50_features,
                   reads_evidence=False, description="the same on the features only: the same model as the refiner's probe"),
        MethodSpec("ceiling", "clean ceiling*", _sk(_ceiling), reference=True,
                   description="LogisticRegression (C=1) on every gold corpus label; features + evidence (reference)"),
    )
}

METHODS: tuple[str, ...] = tuple(REGISTRY)
REFERENCE_METHODS: tuple[str, ...] = tuple(k for k, v in REGISTRY.items() if v.reference)
SILR_FAMILY: tuple[str, ...] = tuple(k for k, v in REGISTRY.items() if v.silr)


def run_method(name: str, inp: Inputs) -> MethodResult:
    """Run one method; never raises for a method failure (the error is recorded)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}")
    t0 = time.perf_counter()
    try:
        res = REGISTRY[name].run(inp)
    except Exception as e:  # a method crashing must not stop the suite
        res = MethodResult(name, None, None, error=f"{type(e).__name__}: {e}")
    res.method = name
    res.seconds = time.perf_counter() - t0
    return res
