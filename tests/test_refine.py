"""The refinement loop as an estimator, on arrays."""

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from silr.learners import HeadLearner
from silr.priors import estimate_priors
from silr.refine import RefinementError, SelfIterativeRefiner, StopReason


def gold(y, lab):
    """y_gold: the gold labels of the labeled rows, -1 elsewhere."""
    g = np.full(len(y), -1)
    g[lab] = np.asarray(y)[lab]
    return g


def make_task(n=4000, d=10, flip_pos=0.45, flip_neg=0.10, seed=0, n_lab=50):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, :3] += 1.2 * y[:, None]
    flip = np.where(y == 1, rng.random(n) < flip_pos, rng.random(n) < flip_neg)
    s = np.where(flip, 1 - y, y)
    lab = rng.choice(n, n_lab, replace=False)
    return X, y, s, lab


def fit(X, y, s, lab, **kw):
    kw.setdefault("learner", HeadLearner(epochs=30))
    return SelfIterativeRefiner(**kw).fit(X, s, y_gold=gold(y, lab))


def test_refinement_beats_class_conditional_noise_and_records_every_round():
    X, y, s, lab = make_task()
    m = fit(X, y, s, lab, rounds=3)
    acc0 = (s == y).mean()
    assert acc0 == pytest.approx(0.72, abs=0.03)
    assert (m.labels_[1] == y).mean() > acc0 + 0.08
    assert (m.transduction_ == y).mean() > acc0 + 0.08
    assert m.labels_.shape == (m.n_rounds_ + 1, len(y))
    assert np.array_equal(m.labels_[0], s)
    assert len(m.priors_) == m.n_rounds_ + 1 == len(m.rounds_)
    for rec in m.rounds_[1:]:
        assert rec["risk"] in ("robust_uu", "uu")
        assert 1 <= rec["best_epoch"] <= 30 and len(rec["history"]) == 30
        assert rec["val_loss"] == min(h["val_loss"] for h in rec["history"])
        assert set(rec["intervals"]) >= {"pi", "theta_p", "theta_n"}
    assert m.rounds_[1]["risk"] == "robust_uu" and m.rounds_[2]["risk"] == "uu"
    json.dumps(m.summary())  # JSON-able


def test_estimator_api_contract():
    X, y, s, lab = make_task(n=1500)
    m = fit(X, y, s, lab, rounds=1)
    assert list(m.classes_) == [0, 1]
    p = m.predict_proba(X)
    assert p.shape == (len(y), 2) and np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert np.allclose(p.sum(1), 1)
    pred = m.predict(X)
    assert set(np.unique(pred)) <= {0, 1}
    assert np.array_equal(pred, (m.decision_function(X) > 0).astype(int))
    # the corpus labels of the predict round are what predict gives on the corpus
    assert np.array_equal(pred, m.labels_[m.predict_round_])
    with pytest.raises(NotFittedError):
        SelfIterativeRefiner().predict(X)
    with pytest.raises(ValueError, match="risk"):
        SelfIterativeRefiner(risk="nope").fit(X, s, y_gold=gold(y, lab))


def test_save_and_load_reproduce_scores_without_pickle(tmp_path):
    X, y, s, lab = make_task(n=1500)
    m = fit(X, y, s, lab, rounds=2)
    m.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["config.json", "weights.safetensors"]
    m2 = SelfIterativeRefiner.load(tmp_path / "model")
    assert np.allclose(m.decision_function(X), m2.decision_function(X), atol=1e-5)
    assert np.allclose(m.predict_proba(X), m2.predict_proba(X), atol=1e-6)


def test_inverted_pseudo_labels_stop_with_a_clear_message():
    X, y, s, lab = make_task(n=1500)
    with pytest.raises(RefinementError, match="inverted"):
        fit(X, y, 1 - y, lab, rounds=2, probe=False)
    # with the probe (default) the loop does not start, says why, and hands back the labeled rows' probe
    m = fit(X, y, 1 - y, lab, rounds=2)
    assert m.n_rounds_ == 0 and m.stop_reason_ is StopReason.NOT_STARTED and "inverted" in m.stop_detail_
    assert m.final_source_ == "probe"
    assert (m.transduction_ == y).mean() > 0.7
    assert np.array_equal(m.predict(X), m.transduction_)


def test_a_round_with_unusable_priors_does_not_relabel():
    X, y, s, lab = make_task(n=1500)
    calls = []

    def prior_fn(r, labels):
        calls.append(r)
        est = estimate_priors(y[lab], s[lab], float(np.mean(labels)))
        if r == 1:  # pretend round 1's labeler came out inverted
            return estimate_priors(y[lab], 1 - y[lab], float(np.mean(labels)))
        return est

    m = SelfIterativeRefiner(rounds=3, learner=HeadLearner(epochs=10)).fit(
        X, s, y_gold=gold(y, lab), prior_fn=prior_fn
    )
    assert m.n_rounds_ == 0
    assert m.stop_reason_ == "round_rejected" and "round 1" in m.stop_detail_ and m.rounds_[1]["rejected"]
    assert np.array_equal(m.transduction_, s)


def test_running_mean_holds_round_one_gain_better_than_last_only():
    X, y, s, lab = make_task(n=4000, seed=3)
    mean = fit(X, y, s, lab, rounds=4, aggregate="running_mean", selection="last")
    last = fit(X, y, s, lab, rounds=4, aggregate="last", later_risk="robust_uu", selection="last")
    acc_mean = (mean.transduction_ == y).mean()
    acc1 = (mean.labels_[1] == y).mean()
    assert acc_mean >= acc1 - 0.01
    assert acc_mean >= (last.transduction_ == y).mean() - 0.005


def test_selection_falls_back_to_round_zero_when_labeled_sample_says_so():
    # a near-perfect labeler and a weak feature space: refinement cannot match the labeler
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.integers(0, 2, n)
    X = (rng.normal(size=(n, 5)) + 0.3 * y[:, None]).astype(np.float32)
    s = np.where(rng.random(n) < 0.04, 1 - y, y)
    lab = rng.choice(n, 60, replace=False)
    m = fit(X, y, s, lab, rounds=2, stack=False)
    assert m.final_round_ == 0
    assert np.array_equal(m.transduction_, s)
    assert m.final_source_ == "llm" and "'llm' chosen" in m.selection_reason_
    assert m.prob_round0_better_ >= 0.9
    # with the stack (default) the pseudo-label dominates the stacked posterior: no worse than the labeler
    m = fit(X, y, s, lab, rounds=2)
    assert m.final_source_ in ("stack", "llm")
    assert (m.transduction_ == y).mean() >= (s == y).mean() - 0.01


def _strong_llm_task(seed=0, n=4000):
    """An LLM score that is informative (AUC ~0.9) and features that carry other, independent evidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    llm = 1.8 * (y - 0.5) + rng.normal(size=n)
    X = (rng.normal(size=(n, 8)) + 0.9 * y[:, None] * (np.arange(8) < 2)).astype(np.float32)
    s = (llm > 0).astype(int)
    lab = rng.choice(n, 50, replace=False)
    return X, y, s, llm, lab


def test_stack_of_llm_score_and_refined_score_beats_both():
    accs = {"llm": [], "refined": [], "final": []}
    for seed in range(3):
        X, y, s, llm, lab = _strong_llm_task(seed)
        m = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=30), seed=seed).fit(
            X, s, y_gold=gold(y, lab), llm_score=llm
        )
        assert "stack" in m.candidates_ and m.stack_ is not None
        accs["llm"].append((s == y).mean())
        accs["refined"].append((m.labels_[m.n_rounds_] == y).mean())
        accs["final"].append((m.transduction_ == y).mean())
        if m.final_source_ == "stack":
            # on the corpus, the stack applied through decision_function reproduces the handed-back labels
            assert np.array_equal(m.predict(X, llm_score=llm), m.transduction_)
    mean = {k: float(np.mean(v)) for k, v in accs.items()}
    assert mean["final"] > max(mean["llm"], mean["refined"]) + 0.01, mean


def test_stack_and_probe_survive_save_and_load(tmp_path):
    X, y, s, llm, lab = _strong_llm_task(1, n=2000)
    m = SelfIterativeRefiner(rounds=1, learner=HeadLearner(epochs=20)).fit(
        X, s, y_gold=gold(y, lab), llm_score=llm
    )
    m.save(tmp_path / "m")
    m2 = SelfIterativeRefiner.load(tmp_path / "m")
    assert m2.final_source_ == m.final_source_
    assert np.allclose(m.decision_function(X, llm_score=llm), m2.decision_function(X, llm_score=llm), atol=1e-5)


def test_probe_is_handed_back_when_the_refined_labels_are_far_worse():
    # features carry the label; the LLM is barely better than chance: 50 gold rows beat both LLM and UU
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    X = (rng.normal(size=(n, 4)) + 3 * y[:, None] * (np.arange(4) < 1)).astype(np.float32)
    X[:, 3] *= 3
    # pseudo-labels mostly follow a nuisance feature, not y (instance-dependent noise): about 58% accurate
    s = np.where(rng.random(n) < 0.15, y, (X[:, 3] > 0).astype(int))
    lab = rng.choice(n, 50, replace=False)
    m = SelfIterativeRefiner(rounds=1, learner=HeadLearner(epochs=20)).fit(X, s, y_gold=gold(y, lab))
    assert m.candidates_["probe"]["labeled_accuracy"] > 0.75
    assert m.final_source_ == "probe"
    assert (m.transduction_ == y).mean() > 0.75
    assert np.array_equal(m.predict(X), m.transduction_)


def test_llm_threshold_fitted_on_labeled_rows_is_judged_out_of_fold():
    from silr.selection import threshold_oof_correct

    ins, oof = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 50)
        score = rng.normal(size=50)  # no signal: an in-sample threshold still looks better than chance
        ins.append(max(np.mean((score > t) == y) for t in np.r_[score.min() - 1, np.sort(score)]))
        oof.append(threshold_oof_correct(score, y).mean())
    assert np.mean(ins) > 0.57
    assert np.mean(oof) < np.mean(ins) - 0.05 and np.mean(oof) < 0.55


def test_relabel_stack_keeps_llm_evidence_in_the_loop():
    """Features that see the labels only weakly, an LLM score that sees them well: relabeling each round by
    the stack of (LLM score, classifier score) keeps the LLM's evidence; relabeling by the classifier alone
    throws it away after round 1."""
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 10)) + 0.35 * y[:, None]  # weak view
    score = 2.2 * (y - 0.5) + rng.normal(size=n)  # the LLM: about 0.87 accurate
    s = (score > 0).astype(int)
    lab = rng.choice(n, 50, replace=False)
    res = {}
    for relabel in ("classifier", "stack"):
        m = SelfIterativeRefiner(rounds=3, learner=HeadLearner(epochs=20), relabel=relabel, probe=False, stack=False, seed=0)
        m.fit(X, s, y_gold=gold(y, lab), llm_score=score)
        res[relabel] = [float(np.mean(m.labels_[r] == y)) for r in range(m.n_rounds_ + 1)]
    assert res["stack"][-1] > res["classifier"][-1] + 0.03
    assert res["stack"][-1] >= res["stack"][0] - 0.01  # never far below the LLM it started from


def test_relabel_and_llm_score_are_validated():
    X = np.random.default_rng(0).normal(size=(100, 3))
    s = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match="relabel"):
        SelfIterativeRefiner(relabel="both").fit(X, s, y_gold=gold(s, np.arange(20)))
    with pytest.raises(ValueError, match="llm_score"):
        SelfIterativeRefiner().fit(X, s, y_gold=gold(s, np.arange(20)), llm_score=np.zeros(99))


def test_stack_with_probe_input_predicts_and_reloads(tmp_path):
    """stack_probe adds the labeled-row probe's score as a third stack input; the handed-back model applies
    the same three inputs to new rows, before and after save/load."""
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 10)) + 0.8 * y[:, None]
    score = 1.6 * (y - 0.5) + rng.normal(size=n)
    s = (score > 0).astype(int)
    lab = rng.choice(n, 50, replace=False)
    m = SelfIterativeRefiner(rounds=3, learner=HeadLearner(epochs=20), stack_probe=True, seed=0)
    m.fit(X, s, y_gold=gold(y, lab), llm_score=score)
    assert m.final_source_ == "stack" and m.stack_["probe"] and len(m.stack_["coef"]) == 3
    np.testing.assert_array_equal(m.predict(X, llm_score=score), m.transduction_)
    assert np.mean(m.transduction_ == y) > np.mean(s == y) + 0.08
    m.save(tmp_path / "m")
    again = SelfIterativeRefiner.load(tmp_path / "m")
    np.testing.assert_allclose(again.decision_function(X, llm_score=score), m.decision_function(X, llm_score=score),
                               atol=1e-6)


def test_round0_priors_do_not_trust_a_threshold_fitted_on_the_labeled_rows():
    """An LLM at chance whose threshold was tuned on the 50 labeled rows looks ~10 points better than chance on
    them; the refiner re-fits that threshold out of fold for the round-0 priors, sees no signal, and does not
    refine on noise (the not-started fallback, a stack of the LLM score and the probe, is handed back, and it
    labels the corpus as the probe does: it learned to ignore the LLM)."""
    from silr.selection import is_threshold_of

    rng = np.random.default_rng(7)
    n = 2000
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 10)) + 1.0 * y[:, None]
    score = rng.normal(size=n)  # no signal at all
    lab = rng.choice(n, 50, replace=False)
    # the accuracy-maximising cut on the labeled rows, as `silr annotate --threshold accuracy` picks it
    cuts = np.sort(score[lab])
    t = max(cuts, key=lambda c: np.mean((score[lab] > c) == y[lab]))
    s = (score > t).astype(int)
    assert is_threshold_of(s, score) and not is_threshold_of(1 - s, score)
    in_sample = np.mean(s[lab] == y[lab])
    assert in_sample >= 0.58  # looks like signal in-sample
    m = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=10), seed=0).fit(
        X, s, y_gold=gold(y, lab), llm_score=score)
    assert m.rounds_[0]["labeled_rows_round0_labels"].startswith("threshold")
    assert m.priors_[0].accuracy < in_sample - 0.05
    assert m.n_rounds_ == 0 and m.final_source_ == "stack" and m.stack_["refined"] is False
    probe_only = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=10), seed=0, stack=False).fit(
        X, s, y_gold=gold(y, lab), llm_score=score)
    assert probe_only.final_source_ == "probe"
    assert np.mean(m.transduction_ == probe_only.transduction_) > 0.9


def test_no_significant_gap_means_no_refinement_with_llm_scores():
    """start_gap_lower='auto': with LLM scores, a round-0 gap whose 95% interval reaches 0 does not start a
    refinement (the probe / LLM selection decides); without scores the rule is off."""
    rng = np.random.default_rng(11)
    n = 2000
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 10)) + 1.0 * y[:, None]
    score = 0.6 * (y - 0.5) + rng.normal(size=n)  # barely above chance (~0.62)
    s = (score > 0).astype(int)
    lab = rng.choice(n, 50, replace=False)
    kw = dict(y_gold=gold(y, lab))
    m = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=10), seed=0, min_gap=0.0).fit(
        X, s, llm_score=score, **kw)
    gap = m.priors_[0].intervals["gap"]
    assert gap.low <= 0.0
    assert m.n_rounds_ == 0 and "95% interval" in m.stop_detail_
    off = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=10), seed=0, min_gap=0.0, start_gap_lower=None).fit(
        X, s, llm_score=score, **kw)
    assert off.n_rounds_ > 0 or "95% interval" not in off.stop_detail_


def test_threshold_putting_every_labeled_row_on_one_side_falls_back_to_the_probe():
    """An LLM threshold that calls all 50 labeled rows negative leaves no prior to estimate: with the LLM's
    scores the refiner records 'no signal' and hands back the probe (or the LLM labels), it does not raise."""
    rng = np.random.default_rng(5)
    n = 2000
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 10)) + 1.0 * y[:, None]
    score = rng.normal(size=n)
    lab = rng.choice(n, 50, replace=False)
    t = score[lab].max() + 1e-6  # every labeled row below the cut
    s = (score > t).astype(int)
    assert s.sum() > 0 and s[lab].sum() == 0
    m = SelfIterativeRefiner(rounds=2, learner=HeadLearner(epochs=10), seed=0).fit(
        X, s, y_gold=gold(y, lab), llm_score=score)
    assert m.n_rounds_ == 0 and m.final_source_ in ("stack", "llm")
    assert "refinement not started" in m.stop_detail_
    assert np.isfinite(m.priors_[0].pi)


def test_not_started_fallback_keeps_the_llms_evidence(tmp_path):
    """When the loop does not start (50 rows that make the LLM look useless), the fallback is a stack of the LLM's
    score and the probe's out-of-fold score, not one of the two: with two independent sources of evidence it
    beats what the old fallback (the probe or the LLM's labels) handed back; it saves, reloads and predicts new
    rows with and without their LLM score (without: its probe)."""
    rng = np.random.default_rng(3)
    n, d = 3000, 60
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d))
    X[:, :d] += 0.2 * (2 * y[:, None] - 1)  # signal spread over many dimensions
    score = 0.85 * (2 * y - 1) + rng.normal(size=n)  # an LLM ~0.80 right
    s = (score > 0).astype(int)
    lab = rng.choice(n, 50, replace=False)
    kw = dict(rounds=2, learner=HeadLearner(epochs=10), seed=0, start_gap_lower=None, min_gap=0.99)  # never starts
    m = SelfIterativeRefiner(**kw).fit(X, s, y_gold=gold(y, lab), llm_score=score)
    old = SelfIterativeRefiner(**kw, stack=False).fit(X, s, y_gold=gold(y, lab), llm_score=score)
    assert m.n_rounds_ == 0 and "a stack of the LLM's score" in m.stop_detail_
    assert m.final_source_ == "stack" and m.stack_["probe"] and not m.stack_["refined"] and len(m.stack_["coef"]) == 2
    acc_stack, acc_old = np.mean(m.transduction_ == y), np.mean(probe_only_labels(old) == y)
    assert acc_stack > max(acc_old, np.mean(s == y)) + 0.03, (acc_stack, acc_old, np.mean(s == y))
    np.testing.assert_array_equal(m.predict(X, llm_score=score), m.transduction_)
    m.save(tmp_path / "m")
    again = SelfIterativeRefiner.load(tmp_path / "m")
    np.testing.assert_allclose(again.decision_function(X, llm_score=score), m.decision_function(X, llm_score=score),
                               atol=1e-6)
    from silr.selection.candidates import probe_decision

    np.testing.assert_allclose(again.decision_function(X), probe_decision(m.handback_.probe, X), atol=1e-6)


def probe_only_labels(m):
    """The corpus labels a refiner that fell back to the probe (or the LLM) handed back."""
    assert m.n_rounds_ == 0 and m.final_source_ in ("probe", "llm")
    return m.transduction_


def test_model_folders_from_before_the_learner_parameter_still_load(tmp_path):
    """A silr-refiner/1 folder written before the learner became one parameter (the head's settings among the
    refiner's parameters, no classes) loads and scores the same."""
    X, y, s, lab = make_task(n=1500)
    m = fit(X, y, s, lab, rounds=2)
    m.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    params = cfg["params"]
    for k in ("learner", "supervised_weight"):
        params.pop(k)
    params.update(hidden=0, epochs=30, lr=0.01, weight_decay=1e-4, batch_size=None, slope=0.1)
    for k in ("classes", "takes_texts"):
        cfg.pop(k)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = SelfIterativeRefiner.load(tmp_path / "m")
    assert isinstance(old.learner, HeadLearner) and old.learner.epochs == 30 and list(old.classes_) == [0, 1]
    np.testing.assert_allclose(old.decision_function(X), m.decision_function(X), atol=1e-6)
    np.testing.assert_array_equal(old.predict(X), m.predict(X))


def test_merge_labeled_marks_corpus_rows_by_text_and_appends_the_rest():
    from silr.fit_checks import merge_labeled

    X = np.arange(10, dtype=np.float64).reshape(5, 2)
    y = np.array([0, 1, 0, 1, 1])
    keys = ["a", "b", "c", "b", "e"]
    # "b" twice (both corpus copies get marked), "c" with another pseudo-label (appended), "z" not in the corpus
    X_lab = np.array([[2.0, 3.0], [6.0, 7.0], [4.0, 5.0], [9.0, 9.0]])
    Xa, ya, g, llm = merge_labeled(X, y, X_lab, np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0]), keys=keys,
                                   labeled_keys=["b", "b", "c", "z"])
    assert llm is None
    np.testing.assert_array_equal(g, [-1, 1, -1, 0, -1, 1, 1])
    np.testing.assert_array_equal(ya, [0, 1, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(Xa[5:], X_lab[2:])
    np.testing.assert_array_equal(Xa[:5], X)


def test_a_threshold_not_fitted_on_the_labeled_rows_is_judged_as_given():
    """Pseudo-labels cut at a fixed threshold (not fitted on the labeled rows): the start gate, the gain and the
    hand-back judge the LLM's labels on the labeled rows as given, not by a threshold refitted out of fold."""
    from silr.selection import threshold_oof_correct

    X, y, s, llm, lab = _strong_llm_task(6, n=2000)
    lab = np.sort(lab)  # the refiner takes the labeled rows in corpus order (the out-of-fold folds follow it)
    as_given = int((s[lab] == y[lab]).sum())
    oof = int(threshold_oof_correct(llm[lab], y[lab]).sum())
    assert as_given != oof  # the two judgements differ on this draw, so the test can tell them apart
    kw = dict(rounds=1, learner=HeadLearner(epochs=20))
    inferred = SelfIterativeRefiner(**kw).fit(X, s, y_gold=gold(y, lab), llm_score=llm)
    given = SelfIterativeRefiner(**kw).fit(X, s, y_gold=gold(y, lab), llm_score=llm, llm_threshold_fitted=False)
    assert "out of fold" in inferred.round0_labeled_ and given.round0_labeled_ == "as given"
    assert inferred.candidates_["llm"]["n_right"] == oof
    assert given.candidates_["llm"]["n_right"] == as_given
    g_inf, g_given = inferred.rounds_[1]["gain_over_round0"], given.rounds_[1]["gain_over_round0"]
    assert "note" in g_inf and "note" not in g_given


def test_selection_reason_says_when_a_candidate_right_on_more_rows_is_not_reliably_better():
    from silr.selection import Candidate, select

    right = np.ones(50, dtype=bool)
    default = Candidate("stack", np.zeros(10), right.copy(), "stack")
    other = right.copy()
    default.correct[:3] = False  # stack right on 47, llm on 48: one row apart, not reliably better
    other[:2] = False
    chosen, reason, _ = select([Candidate("llm", np.zeros(10), other, "llm"), default], "stack", n_bootstrap=500)
    assert chosen.name == "stack"
    assert "'stack' kept (the default)" in reason and "llm right on more of them, but not reliably" in reason
