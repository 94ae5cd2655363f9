"""SelfIterativeRefiner as a scikit-learn estimator: check_estimator, Pipeline, GridSearchCV, metadata routing,
label values, the learner parameter, and fitting without any gold label."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from silr import HandBack, SelfIterativeRefiner, StopReason
from silr.learners import HeadLearner

_NO_CLASSIFIER = (
    "on this check's data (a few dozen rows whose labels the features do not support, and no gold label) the "
    "refiner rightly does not refine and hands back the pseudo-labels; no classifier was kept, so predict raises "
    "RefinementError by design (silr does not invent a classifier it did not keep)"
)
#: the checks expected to fail, each with its reason (scikit-learn's own mechanism: ``expected_failed_checks``)
EXPECTED_FAILED_CHECKS = {
    "check_estimators_dtypes": _NO_CLASSIFIER,  # 20 rows of uniform noise, labels from one coarse feature
    "check_fit_idempotent": _NO_CLASSIFIER,  # labels drawn at random, independent of X
}


def _fast(**kw):
    """Small settings so the ~56 checks run in well under a minute (each fit estimates priors from the corpus)."""
    return SelfIterativeRefiner(**{"rounds": 1, "n_bootstrap": 20, "learner": HeadLearner(epochs=20), **kw})


@parametrize_with_checks([_fast()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no gold labels": every check fits without y_gold
        check(estimator)


def _task(n=1500, seed=0, n_lab=50, d=6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + 1.1 * y[:, None] * (np.arange(d) < 3)
    s = np.where(rng.random(n) < np.where(y == 1, 0.35, 0.1), 1 - y, y)
    g = np.full(n, -1)
    lab = np.sort(rng.choice(n, n_lab, replace=False))
    g[lab] = y[lab]
    return X, y, s, g


def test_labels_of_any_two_values_map_back():
    X, y, s, g = _task()
    ref = SelfIterativeRefiner(rounds=1, n_bootstrap=200).fit(X, s, y_gold=g)
    names = np.array(["neg", "pos"])
    m = SelfIterativeRefiner(rounds=1, n_bootstrap=200).fit(X, names[s], y_gold=np.where(g >= 0, names[np.maximum(g, 0)], None).astype(object))
    assert list(m.classes_) == ["neg", "pos"]
    np.testing.assert_array_equal(m.transduction_, names[ref.transduction_])
    np.testing.assert_array_equal(m.predict(X), names[ref.predict(X)])
    np.testing.assert_allclose(m.decision_function(X), ref.decision_function(X))
    # an empty string is unknown too (the review helper's finding: it became a class); '' and None give one fit
    e = SelfIterativeRefiner(rounds=1, n_bootstrap=200).fit(X, names[s], y_gold=np.where(g >= 0, names[np.maximum(g, 0)], ""))
    assert list(e.classes_) == ["neg", "pos"]
    np.testing.assert_array_equal(e.transduction_, m.transduction_)
    # -1 / 1 labels: -1 is a class, so unknown gold is NaN
    pm = np.array([-1, 1])
    m = SelfIterativeRefiner(rounds=1, n_bootstrap=200).fit(X, pm[s], y_gold=np.where(g >= 0, pm[np.maximum(g, 0)], np.nan))
    assert list(m.classes_) == [-1, 1]
    np.testing.assert_array_equal(m.transduction_, pm[ref.transduction_])


def test_bad_inputs_are_refused_clearly():
    X, y, s, g = _task(n=300)
    with pytest.raises(ValueError, match="linear softmax head"):  # K > 2: silr.multiclass
        SelfIterativeRefiner(learner=HeadLearner(hidden=4)).fit(X, np.arange(300) % 3, y_gold=g)
    with pytest.raises(ValueError, match=r"y_gold has shape \(299,\); expected \(300,\)"):
        SelfIterativeRefiner().fit(X, s, y_gold=g[:-1])
    with pytest.raises(ValueError, match="neither a class of y"):
        SelfIterativeRefiner().fit(X, s, y_gold=np.where(g >= 0, 7, -1))
    with pytest.raises(ValueError, match=r"llm_score has shape \(10,\)"):
        SelfIterativeRefiner().fit(X, s, y_gold=g, llm_score=np.zeros(10))
    with pytest.raises(ValueError, match="supervised_weight"):
        SelfIterativeRefiner(supervised_weight=1.5).fit(X, s, y_gold=g)


def test_without_gold_labels_it_warns_and_estimates_priors_from_the_corpus():
    X, y, s, _ = _task(n=2000, seed=1)
    with pytest.warns(UserWarning, match="no gold labels"):
        m = SelfIterativeRefiner(rounds=2, n_bootstrap=300).fit(X, s)
    p0 = m.priors_[0]
    assert p0.method == "confident_joint" and p0.n_labeled == 0
    true_tp, true_tn = y[s == 1].mean(), y[s == 0].mean()
    # a rough estimate (here theta_p 0.68 for a true 0.85, theta_n 0.28 for 0.31), but on the right side of chance
    assert abs(p0.theta_p - true_tp) < 0.2 and abs(p0.theta_n - true_tn) < 0.1, (p0, true_tp, true_tn)
    assert p0.intervals["gap"].low > 0.2
    for k in ("pi", "theta_p", "theta_n", "gap"):
        iv = p0.intervals[k]
        assert iv.low < getattr(p0, k) + 1e-9 and iv.high > getattr(p0, k) - 1e-9 and iv.high > iv.low
    assert m.n_rounds_ >= 1 and m.final_source_ is HandBack.REFINED
    assert (m.transduction_ == y).mean() > (s == y).mean() + 0.05


def test_pipeline_and_metadata_routing():
    X, y, s, g = _task()
    pipe = make_pipeline(StandardScaler(), SelfIterativeRefiner(rounds=1, n_bootstrap=200))
    pipe.fit(X, s, selfiterativerefiner__y_gold=g)  # legacy step__param routing
    acc = (pipe.predict(X) == y).mean()
    assert acc > (s == y).mean()
    with sklearn.config_context(enable_metadata_routing=True):
        est = SelfIterativeRefiner(rounds=1, n_bootstrap=200).set_fit_request(y_gold=True, llm_score=True)
        routed = make_pipeline(StandardScaler(), est).fit(X, s, y_gold=g)
        np.testing.assert_array_equal(routed.predict(X), pipe.predict(X))
        # without the request the gold labels do not reach the refiner: scikit-learn refuses them
        with pytest.raises(Exception, match="y_gold"):
            make_pipeline(StandardScaler(), SelfIterativeRefiner(rounds=1)).fit(X, s, y_gold=g)


def test_grid_search_over_refiner_and_learner_parameters():
    X, y, s, g = _task(n=1200)
    grid = GridSearchCV(
        SelfIterativeRefiner(n_bootstrap=100),
        {"rounds": [1, 2], "learner": [HeadLearner(epochs=5), HeadLearner(epochs=20)]},
        cv=2,
    )
    grid.fit(X, s, y_gold=g)  # y_gold is split with the folds
    assert set(grid.best_params_) == {"rounds", "learner"}
    assert len(grid.cv_results_["mean_test_score"]) == 4 and np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_.predict(X).shape == (len(y),)


class _RecordingLearner(HeadLearner):
    """A head that records what each round's fit was given."""

    calls: list = []

    def fit(self, X, pseudo, weights, *, risk, val_mask, seed=0, **kw):
        type(self).calls.append(kw)
        return super().fit(X, pseudo, weights, risk=risk, val_mask=val_mask, seed=seed, **kw)


def test_learner_parameter_is_cloned_and_gets_labeled_rows_only_when_weighted():
    X, y, s, g = _task(n=1000)
    template = _RecordingLearner(epochs=5)
    _RecordingLearner.calls = []
    m = SelfIterativeRefiner(rounds=2, learner=template, n_bootstrap=100).fit(X, s, y_gold=g)
    assert not hasattr(template, "module_")  # the template itself is never fitted
    assert len({id(lr) for lr in m.learners_}) == len(m.learners_) and all(lr is not template for lr in m.learners_)
    assert _RecordingLearner.calls and all(c == {} for c in _RecordingLearner.calls)  # w = 0: no labeled kwarg
    _RecordingLearner.calls = []
    SelfIterativeRefiner(rounds=1, learner=template, supervised_weight=0.3, n_bootstrap=100).fit(X, s, y_gold=g)
    (call,) = _RecordingLearner.calls
    X_lab, y_lab, w = call["labeled"]
    lab = np.flatnonzero(g >= 0)
    np.testing.assert_array_equal(X_lab, X[lab])
    np.testing.assert_array_equal(y_lab, g[lab])
    assert w == 0.3
    c = clone(SelfIterativeRefiner(learner=template))
    assert c.learner is not template and c.learner.epochs == 5


class _TextLearner:
    """A learner on texts: scores a text by how many 'good' it has minus 'bad'."""

    takes_texts = True

    def fit(self, X, pseudo, weights, *, risk, val_mask, seed=0):
        self.history_, self.best_epoch_ = [], 1
        return self

    def decision_function(self, X):
        return np.array([t.count("good") - t.count("bad") + 0.1 for t in X], dtype=np.float64)


def test_texts_reach_a_text_learner_unvalidated():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    texts = [("good " if v else "bad ") * int(rng.integers(1, 3)) + f"item {i}" for i, v in enumerate(y)]
    s = np.where(rng.random(400) < 0.25, 1 - y, y)
    g = np.full(400, -1)
    g[::8] = y[::8]
    m = SelfIterativeRefiner(rounds=1, learner=_TextLearner(), n_bootstrap=100).fit(texts, s, y_gold=g)
    assert not hasattr(m, "n_features_in_") and m.takes_texts_
    assert (m.predict(["good good", "bad"]) == [1, 0]).all()
    assert m.stop_reason_ in (StopReason.COMPLETED, StopReason.CONVERGED)
