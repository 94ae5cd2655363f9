"""K-class T matrix and corrected risk: equal to the binary UU risks for K = 2, unbiased, clear on singular T."""

import numpy as np
import pytest
import torch

from silr.multiclass import (KWeights, TMatrixError, binary_T, class_partial_risks, estimate_T, kclass_risk,
                             regularize_T, robust_kclass_risk)
from silr.priors import estimate_priors
from silr.risks import UUWeights, partial_risks, robust_uu_risk, uu_risk


@pytest.mark.parametrize("theta_p,theta_n,rho", [(0.8, 0.2, 0.45), (0.6, 0.35, 0.7), (0.95, 0.05, 0.1)])
def test_k2_equals_binary_risks(theta_p, theta_n, rho):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(300, generator=g, dtype=torch.float64) * 3
    s = (torch.rand(300, generator=g) < rho).long()
    pi = rho * theta_p + (1 - rho) * theta_n
    bw = UUWeights.from_priors(pi, theta_p, theta_n)
    kw = KWeights(binary_T(theta_p, theta_n), [1 - rho, rho], max_condition=None)
    logits = torch.stack([torch.zeros_like(z), z], 1)
    pos, neg = partial_risks(z.float(), s, bw)
    parts = class_partial_risks(logits.float(), s, kw)
    assert torch.allclose(parts[1], pos, atol=1e-5) and torch.allclose(parts[0], neg, atol=1e-5)
    assert torch.allclose(kclass_risk(logits.float(), s, kw), uu_risk(z.float(), s, bw), atol=1e-5)
    for slope in (-0.001, -1.0):
        a = robust_kclass_risk(logits.float(), s, kw, slope)
        b = robust_uu_risk(z.float(), s, bw, slope)
        assert torch.allclose(a, b, atol=1e-5)


def test_k2_jeffreys_T_equals_binary_priors():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.where(rng.random(60) < 0.75, y, 1 - y)
    est = estimate_priors(y, s, 0.4, n_bootstrap=50)
    t = estimate_T(y, s, [0.6, 0.4], prior="auto", n_bootstrap=50)
    assert t.prior == "jeffreys"
    assert np.allclose(t.T, binary_T(est.theta_p, est.theta_n))
    assert t.accuracy == pytest.approx(est.accuracy)
    assert np.allclose(t.pi[1], est.pi)


def test_unbiased_against_clean_risk():
    """Averaged over many corpora drawn from the same class-conditional noise, the corrected risk of a fixed
    classifier equals its clean risk (the plain pseudo-label risk does not)."""
    rng = np.random.default_rng(0)
    K, n = 4, 4000
    T_true = np.array([[0.55, 0.25, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.1, 0.2, 0.6, 0.1], [0.15, 0.15, 0.1, 0.6]])
    rates = np.array([0.3, 0.25, 0.25, 0.2])
    W = torch.randn(3, K, generator=torch.Generator().manual_seed(0)) * 2
    centers = rng.normal(size=(K, 3)) * 1.5
    kw = KWeights(T_true, rates)
    corrected, clean, naive = [], [], []
    for rep in range(40):
        s = rng.choice(K, n, p=rates)
        y = np.array([rng.choice(K, p=T_true[k]) for k in s])
        X = centers[y] + rng.normal(size=(n, 3))
        z = torch.as_tensor(X, dtype=torch.float32) @ W
        loss = 1 - torch.softmax(z, -1)
        clean.append(float(loss[torch.arange(n), torch.as_tensor(y)].mean()))
        naive.append(float(loss[torch.arange(n), torch.as_tensor(s)].mean()))
        corrected.append(float(kclass_risk(z, torch.as_tensor(s), kw)))
    assert abs(np.mean(corrected) - np.mean(clean)) < 0.01
    assert abs(np.mean(naive) - np.mean(clean)) > max(0.02, 3 * abs(np.mean(corrected) - np.mean(clean)))


def test_near_singular_T_is_a_clear_error_and_can_be_regularised():
    T = np.array([[0.5, 0.3, 0.2], [0.49, 0.31, 0.2], [0.1, 0.1, 0.8]])
    with pytest.raises(TMatrixError, match="near-singular"):
        KWeights(T, [0.3, 0.3, 0.4])
    R, lam = regularize_T(T, 30.0)
    assert 0 < lam < 1
    kw = KWeights(R, [0.3, 0.3, 0.4])
    assert np.allclose(R.sum(1), 1.0) and kw.K == 3


def test_estimate_T_pooled_prior_fills_empty_rows_and_bootstrap_intervals():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    s = np.where(rng.random(50) < 0.7, y, (y + 1) % 3)
    s[s == 2] = 0  # no labeled row is called class 2
    t = estimate_T(y, s, [0.4, 0.4, 0.2], n_bootstrap=200)
    assert t.prior == "pooled" and t.notes and "pseudo-label 2" in t.notes[0]
    assert t.T[2, 2] == t.T[2].max() > 0.4  # the pooled accuracy on the diagonal, not a uniform row
    assert np.allclose(t.T.sum(1), 1)
    assert (t.low <= t.T + 1e-12).all() and (t.T <= t.high + 1e-12).all()
    d = t.to_dict()
    assert len(d["T"]) == 3 and d["n_labeled"] == 50


@pytest.mark.parametrize("bad,match", [
    (dict(y=[0, 3], s=[0, 1], rates=[0.5, 0.5, 0.0]), "codes 0..2"),
    (dict(y=[0, 1], s=[0, 1], rates=[0.5, 0.6]), "summing to 1"),
    (dict(y=[], s=[], rates=[0.5, 0.5]), "empty"),
])
def test_estimate_T_bad_input(bad, match):
    with pytest.raises(TMatrixError, match=match):
        estimate_T(np.asarray(bad["y"], dtype=int), np.asarray(bad["s"], dtype=int), bad["rates"])


def test_ovr_risk_is_the_binary_uu_risk_of_each_class_against_the_rest():
    from silr.multiclass.risk import kclass_batch_risk, ovr_partial_risks, robust_ovr_risk

    g = torch.Generator().manual_seed(2)
    K, n = 3, 400
    logits = torch.randn(n, K, generator=g) * 2
    s = torch.randint(0, K, (n,), generator=g)
    T = np.array([[0.7, 0.2, 0.1], [0.15, 0.6, 0.25], [0.1, 0.2, 0.7]])
    rates = np.bincount(s.numpy(), minlength=K) / n
    kw = KWeights(T, rates)
    pos, neg = ovr_partial_risks(logits, s, kw)
    pi = rates @ T
    total = 0.0
    for c in range(K):
        theta_n = (pi[c] - rates[c] * T[c, c]) / (1 - rates[c])
        bw = UUWeights.from_priors(pi[c], T[c, c], theta_n)
        bp, bn = partial_risks(logits[:, c], (s == c).long(), bw)
        assert torch.allclose(pos[c], bp, atol=1e-5) and torch.allclose(neg[c], bn, atol=1e-5)
        total = total + robust_uu_risk(logits[:, c], (s == c).long(), bw)
    assert torch.allclose(robust_ovr_risk(logits, s, kw), total, atol=1e-5)
    # the refiner's K-class default: the T^-1 robust risk plus the one-vs-rest sum
    mix = kclass_batch_risk("mix_robust_uu", logits, s, kw)
    assert torch.allclose(mix, total + robust_kclass_risk(logits, s, kw), atol=1e-5)
