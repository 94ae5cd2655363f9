"""The methods the benchmark compares, all on the same features of one task.

Every method gets the corpus features ``Xc``, the corpus pseudo-labels ``s``, the indices of the 50 labeled
corpus rows (whose gold labels it may read) and returns predictions on the corpus and on the test split.
Only :func:`run_silr` with ``oracle=True`` and the clean ceiling read the corpus gold beyond the 50 rows
(reference methods, marked as such in the tables).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["MethodResult", "METHODS", "REFERENCE_METHODS", "DEFAULT_SILR", "run_method", "oracle_prior_fn",
           "logreg"]

#: Parameters of the silr method as benchmarked (the refiner's defaults unless the bench overrides them).
DEFAULT_SILR: dict = {}

METHODS = (
    "llm",  # the pseudo-labels as they are
    "silr",  # SelfIterativeRefiner, 50-label priors
    "silr_combined",  # silr's calibrated classifier combined with the pseudo-label (noisy-channel posterior)
    "silr_oracle",  # same with oracle priors (reference)
    "uu",  # plain UU risk every round, same loop
    "pn",  # PN on the pseudo-labels, unweighted, one round
    "lr_balanced",  # class-balanced logistic regression on the pseudo-labels
    "cleanlab",  # CleanLearning(LogisticRegression) on the pseudo-labels
    "self_training",  # SelfTrainingClassifier(LogisticRegression) from the 50 labels
    "lr_50",  # logistic regression on the 50 labels alone
    "ceiling",  # logistic regression on all gold corpus labels (reference)
)
REFERENCE_METHODS = ("silr_oracle", "ceiling")


@dataclass
class MethodResult:
    method: str
    corpus_pred: np.ndarray | None
    test_pred: np.ndarray | None
    rounds: list[dict] = field(default_factory=list)  # per round: corpus_acc, test_acc, priors ...
    info: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def logreg(X, *, class_weight=None, C: float = 1.0, seed: int = 0):
    """The logistic regression every sklearn baseline uses: scikit-learn's defaults (L2, C=1, lbfgs) on the
    features as they are (unit-norm sentence embeddings or TF-IDF rows): the practitioner's first try. The same
    model on all gold labels is the clean ceiling."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight=class_weight, max_iter=3000, random_state=seed)


def logreg_small(X, *, seed: int = 0):
    """Logistic regression for the 50-label baselines: standardised dense features, C=1 (scikit-learn's
    defaults on raw unit-norm embeddings predict one class from 50 rows), or raw TF-IDF with C=10."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if sp.issparse(X):
        return LogisticRegression(C=10.0, max_iter=3000, random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=seed))


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
    """Test-split labels after each kept round (same aggregation as the refiner's corpus labels)."""
    outs, z = [], None
    for j, (lr, sc) in enumerate(zip(model.learners_, model.scales_), start=1):
        g = np.asarray(lr.decision_function(Xt), dtype=np.float64) / sc
        if model.aggregate == "running_mean":
            z = g if z is None else z + g
            outs.append((z / j > 0).astype(np.int8))
        else:
            outs.append((g > 0).astype(np.int8))
    return outs


def combine_with_pseudo(p_y: np.ndarray, s: np.ndarray, y_lab: np.ndarray, s_lab: np.ndarray) -> np.ndarray:
    """Posterior ``P(y=1 | x, s)`` from the classifier's calibrated ``P(y=1 | x)`` and the pseudo-label ``s``,
    treating ``s`` as a noisy channel with true/false-positive rates read off the labeled rows (Jeffreys)."""
    y_lab, s_lab = np.asarray(y_lab), np.asarray(s_lab)
    tpr = (np.sum(s_lab[y_lab == 1]) + 0.5) / (np.sum(y_lab == 1) + 1.0)
    fpr = (np.sum(s_lab[y_lab == 0]) + 0.5) / (np.sum(y_lab == 0) + 1.0)
    p = np.clip(np.asarray(p_y, dtype=np.float64), 1e-6, 1 - 1e-6)
    l1 = np.where(s == 1, tpr, 1 - tpr)
    l0 = np.where(s == 1, fpr, 1 - fpr)
    return p * l1 / (p * l1 + (1 - p) * l0)


def run_silr(Xc, Xt, s, lab, y_corpus, y_test, *, params: dict, seed: int, oracle: bool = False,
             s_test: np.ndarray | None = None, llm_scores: tuple | None = None) -> MethodResult:
    """The refiner on the corpus; ``llm_scores = (corpus, test)`` are the LLM's real-valued scores (LLM track):
    the refiner gets the corpus scores as its LLM evidence and the handed-back stack reads the test scores."""
    from silr.refine import RefinementError, SelfIterativeRefiner

    p = {**DEFAULT_SILR, **params}
    model = SelfIterativeRefiner(seed=seed, **p)
    prior_fn = oracle_prior_fn(y_corpus) if oracle else None
    Xl = Xc[lab]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {}
            if llm_scores is not None:
                kw = {"llm_score": llm_scores[0], "llm_score_labeled": llm_scores[0][lab]}
            model.fit(Xc, s, X_labeled=Xl, y_labeled=y_corpus[lab], pseudo_labeled=s[lab], prior_fn=prior_fn, **kw)
    except RefinementError as e:
        # the refiner refuses to start: the product hands back the pseudo-labels unchanged
        return MethodResult("", s.copy(), None, error=f"refused: {e}", info={"refused": True})
    test_by_round = _silr_round_predictions(model, Xt)
    rounds = []
    for r in range(model.n_rounds_ + 1):
        rec = {"round": r, "corpus_acc": float(np.mean(model.labels_[r] == y_corpus))}
        if r >= 1 and r - 1 < len(test_by_round):
            rec["test_acc"] = float(np.mean(test_by_round[r - 1] == y_test))
        pr = model.priors_[r]
        rec.update({"est_accuracy": pr.accuracy, "pi": pr.pi, "theta_p": pr.theta_p, "theta_n": pr.theta_n})
        s_r = model.labels_[r]
        y = y_corpus
        rec["true_theta_p"] = float(y[s_r == 1].mean()) if (s_r == 1).any() else None
        rec["true_theta_n"] = float(y[s_r == 0].mean()) if (s_r == 0).any() else None
        rec["true_pi"] = float(y.mean())
        if r >= 1:
            rr = model.rounds_[r]
            rec["best_epoch"] = rr.get("best_epoch")
            rec["n_changed"] = rr.get("n_changed")
        rounds.append(rec)
    rejected = [r for r in model.rounds_ if r.get("rejected")]
    info = {"final_round": int(model.final_round_), "predict_round": int(model.predict_round_),
            "n_rounds": int(model.n_rounds_), "stop_reason": model.stop_reason_,
            "selection": model.selection_reason_, "rejected_rounds": len(rejected)}
    test_pred = None
    source = getattr(model, "final_source_", "refined")
    if source == "llm" and s_test is not None:
        test_pred = np.asarray(s_test).copy()  # the LLM's own labels are handed back, on new inputs too
    elif model.predict_round_ > 0 or source == "probe":
        try:  # the handed-back model on new inputs: refined classifier, probe, or stack (needs the
            # new inputs' LLM evidence, here their pseudo-labels)
            evidence = None
            if source == "stack":
                if llm_scores is not None:
                    evidence = np.asarray(llm_scores[1])
                elif s_test is not None:
                    evidence = np.asarray(s_test)
            test_pred = model.predict(Xt, llm_score=evidence)
        except Exception:  # no classifier kept: the pseudo-labels stand (filled in by the runner)
            test_pred = None
    info["final_source"] = source
    info["stack_input"] = getattr(model, "stack_input_", None)
    res = MethodResult("", model.transduction_.copy(), test_pred, rounds=rounds, info=info)
    if model.predict_round_ > 0 and source != "probe":
        # the refined classifier's calibrated probability combined with the pseudo-label as evidence
        y_lab, s_lab = y_corpus[lab], s[lab]
        pc = combine_with_pseudo(model.predict_proba(Xc)[:, 1], s, y_lab, s_lab)
        res.info["combined"] = {"corpus_pred": (pc > 0.5).astype(np.int8)}
        if s_test is not None:
            pt = combine_with_pseudo(model.predict_proba(Xt)[:, 1], np.asarray(s_test), y_lab, s_lab)
            res.info["combined"]["test_pred"] = (pt > 0.5).astype(np.int8)
    return res


def run_method(name: str, Xc, Xt, s, s_test, lab, y_corpus, y_test, *, seed: int, silr_params: dict | None = None,
               llm_scores: tuple | None = None) -> MethodResult:
    """Run one method; never raises for a method failure (the error is recorded). ``llm_scores``: the LLM's
    (corpus, test) scores when the pseudo-labels come from a real LLM (the silr methods use them)."""
    t0 = time.perf_counter()
    silr_params = silr_params or {}
    try:
        res = _run(name, Xc, Xt, s, s_test, lab, y_corpus, y_test, seed=seed, silr_params=silr_params,
                   llm_scores=llm_scores)
    except Exception as e:  # a baseline crashing must not stop the suite
        res = MethodResult(name, None, None, error=f"{type(e).__name__}: {e}")
    res.method = name
    res.seconds = time.perf_counter() - t0
    return res


def _run(name, Xc, Xt, s, s_test, lab, y_corpus, y_test, *, seed, silr_params, llm_scores=None) -> MethodResult:
    s = np.asarray(s).astype(np.int8)
    if name == "llm":
        return MethodResult(name, s.copy(), None if s_test is None else np.asarray(s_test))
    if name == "silr":
        return run_silr(Xc, Xt, s, lab, y_corpus, y_test, params=silr_params, seed=seed, s_test=s_test, llm_scores=llm_scores)
    if name == "silr_oracle":
        return run_silr(Xc, Xt, s, lab, y_corpus, y_test, params=silr_params, seed=seed, oracle=True, llm_scores=llm_scores)
    if name == "uu":
        p = {**silr_params, "risk": "uu", "later_risk": "uu"}
        return run_silr(Xc, Xt, s, lab, y_corpus, y_test, params=p, seed=seed, llm_scores=llm_scores)
    if name == "pn":
        p = {**silr_params, "risk": "pn", "later_risk": "pn", "rounds": 1, "selection": "last"}
        return run_silr(Xc, Xt, s, lab, y_corpus, y_test, params=p, seed=seed, llm_scores=llm_scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "lr_balanced":
            m = logreg(Xc, class_weight="balanced", seed=seed).fit(Xc, s)
            return MethodResult(name, m.predict(Xc), m.predict(Xt))
        if name == "cleanlab":
            from cleanlab.classification import CleanLearning

            m = CleanLearning(logreg(Xc, seed=seed), seed=seed, verbose=False).fit(Xc, s)
            return MethodResult(name, np.asarray(m.predict(Xc)), np.asarray(m.predict(Xt)),
                                info={"issues": int(m.label_issues_df["is_label_issue"].sum())})
        if name == "self_training":
            from sklearn.semi_supervised import SelfTrainingClassifier

            y_semi = np.full(s.size, -1, dtype=np.int64)
            y_semi[lab] = y_corpus[lab]
            m = SelfTrainingClassifier(logreg_small(Xc, seed=seed)).fit(Xc, y_semi)
            return MethodResult(name, m.predict(Xc), m.predict(Xt))
        if name == "lr_50":
            m = logreg_small(Xc, seed=seed).fit(Xc[lab], y_corpus[lab])
            return MethodResult(name, m.predict(Xc), m.predict(Xt))
        if name == "ceiling":
            m = logreg(Xc, seed=seed).fit(Xc, y_corpus)
            return MethodResult(name, m.predict(Xc), m.predict(Xt))
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
