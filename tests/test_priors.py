"""Prior estimation from the labeled sample only."""

import numpy as np
import pytest

from silr.priors import PriorEstimationError, check_usable, estimate_priors


def _draw(rng, n_corpus=20000, pi=0.4, tpr=0.7, fpr=0.15, n_lab=50):
    y = (rng.random(n_corpus) < pi).astype(int)
    s = np.where(y == 1, rng.random(n_corpus) < tpr, rng.random(n_corpus) < fpr).astype(int)
    lab = rng.choice(n_corpus, n_lab, replace=False)
    truth = {"pi": y.mean(), "theta_p": y[s == 1].mean(), "theta_n": y[s == 0].mean()}
    return y[lab], s[lab], s.mean(), truth


def test_point_estimates_close_with_large_sample():
    rng = np.random.default_rng(0)
    y, s, rho, truth = _draw(rng, n_lab=5000)
    est = estimate_priors(y, s, rho, n_bootstrap=200)
    for k in ("pi", "theta_p", "theta_n"):
        assert getattr(est, k) == pytest.approx(truth[k], abs=0.03)
    # pi is tied to the corpus rate exactly
    assert est.pi == pytest.approx(rho * est.theta_p + (1 - rho) * est.theta_n)


def test_bootstrap_interval_covers_truth_in_most_draws():
    rng = np.random.default_rng(1)
    hits = {"pi": 0, "theta_p": 0, "theta_n": 0}
    trials = 150
    for t in range(trials):
        y, s, rho, truth = _draw(rng)
        est = estimate_priors(y, s, rho, n_bootstrap=500, seed=t)
        for k in hits:
            lo, hi = est.intervals[k].low, est.intervals[k].high
            hits[k] += lo <= truth[k] <= hi
    for k, h in hits.items():
        assert h / trials >= 0.85, (k, h / trials)


def test_one_class_sample_and_degenerate_inputs_are_errors():
    with pytest.raises(PriorEstimationError, match="one class only"):
        estimate_priors(np.ones(50, int), np.r_[np.ones(25), np.zeros(25)].astype(int), 0.5)
    with pytest.raises(PriorEstimationError, match="calls every one"):
        estimate_priors(np.r_[np.ones(25), np.zeros(25)].astype(int), np.ones(50, int), 0.5)
    with pytest.raises(PriorEstimationError, match="pseudo-positive rate"):
        estimate_priors(np.r_[1, 0, 1, 0], np.r_[1, 0, 0, 1], 1.0)
    with pytest.raises(PriorEstimationError, match="0/1"):
        estimate_priors(np.r_[1, 0, 2], np.r_[1, 0, 1], 0.5)


def test_inverted_and_too_close_priors_are_flagged():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50)
    est = estimate_priors(y, 1 - y, 0.5)  # an inverted labeler
    msg = check_usable(est)
    assert msg is not None and "inverted" in msg and "theta_p=" in msg
    assert est.prob_gap_nonpositive > 0.99
    s = y.copy()
    s[:20] = rng.integers(0, 2, 20)
    good = estimate_priors(y, np.where(rng.random(50) < 0.9, y, 1 - y), 0.5)
    assert check_usable(good) is None
    close = estimate_priors(np.r_[[1] * 10, [0] * 10, [1] * 9, [0] * 11], np.r_[[1] * 20, [0] * 20], 0.5)
    assert 0 < close.gap < 0.1
    assert "below" in check_usable(close, min_gap=0.1)
    assert check_usable(close) is None or close.gap < 0.03  # the default minimum gap is 0.03


def test_describe_and_to_dict_carry_intervals():
    est = estimate_priors(np.r_[[1] * 20, [0] * 30], np.r_[[1] * 16, [0] * 4, [1] * 6, [0] * 24], 0.44, n_bootstrap=300)
    d = est.to_dict()
    assert set(d["intervals"]) >= {"pi", "theta_p", "theta_n", "accuracy", "gap"}
    lo, hi = d["intervals"]["theta_p"]
    assert lo < est.theta_p < hi
    assert "theta_p=" in est.describe() and "50 labeled rows" in est.describe()
