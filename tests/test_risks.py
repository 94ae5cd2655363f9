"""The risks of PAPER.md section 3, checked with numbers."""

import numpy as np
import pytest
import torch

from silr.risks import UUWeights, batch_risk, leaky, partial_risks, pn_risk, robust_uu_risk, uu_risk


def _mixture(n, theta, rng):
    """n scores of a fixed scorer on a set whose positive rate is theta (class-conditionals N(+1,1), N(-1,1))."""
    y = rng.random(n) < theta
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    return torch.tensor(x), y


def test_uu_risk_matches_clean_pn_risk_on_mixtures():
    rng = np.random.default_rng(0)
    pi, theta_p, theta_n = 0.4, 0.8, 0.2
    n = 400_000
    # corpus positive rate pi = rho theta_p + (1 - rho) theta_n  =>  rho = (pi - theta_n) / (theta_p - theta_n)
    rho = (pi - theta_n) / (theta_p - theta_n)
    zp, _ = _mixture(int(rho * n), theta_p, rng)
    zn, _ = _mixture(n - int(rho * n), theta_n, rng)
    scores = torch.cat([zp, zn]) * 0.7 + 0.1  # a fixed, imperfect scorer
    pseudo = torch.cat([torch.ones(zp.numel()), torch.zeros(zn.numel())])
    w = UUWeights.from_priors(pi, theta_p, theta_n)
    uu = float(uu_risk(scores, pseudo, w))
    # clean risk of the same scorer: pi E+[l(g,+1)] + (1-pi) E-[l(g,-1)]
    zpos = torch.tensor(rng.normal(1.0, 1.0, n)) * 0.7 + 0.1
    zneg = torch.tensor(rng.normal(-1.0, 1.0, n)) * 0.7 + 0.1
    clean = pi * float(torch.sigmoid(-zpos).mean()) + (1 - pi) * float(torch.sigmoid(zneg).mean())
    assert uu == pytest.approx(clean, abs=0.01)
    # and it is not trivially equal to the naive PN risk on the pseudo-labels
    assert abs(float(pn_risk(scores, pseudo)) - clean) > 0.05


def test_uu_with_clean_sets_is_pn():
    rng = np.random.default_rng(1)
    scores = torch.tensor(rng.normal(size=1000))
    labels = torch.tensor(rng.random(1000) < 0.3).float()
    pi = float(labels.mean())
    w = UUWeights.from_priors(pi, 1.0, 0.0)
    assert (w.b, w.c) == (0.0, 0.0)
    assert float(uu_risk(scores, labels, w)) == pytest.approx(float(pn_risk(scores, labels, pi)), abs=1e-9)


def test_robust_equals_plain_when_partial_risks_positive_and_differs_when_negative():
    rng = np.random.default_rng(2)
    scores = torch.tensor(rng.normal(size=500))
    pseudo = torch.tensor(rng.random(500) < 0.5).float()
    w = UUWeights.from_priors(0.5, 0.8, 0.2)
    pos, neg = partial_risks(scores, pseudo, w)
    assert pos > 0 and neg > 0
    assert float(robust_uu_risk(scores, pseudo, w)) == pytest.approx(float(uu_risk(scores, pseudo, w)))
    # an over-fitted scorer that separates P~ from N~ perfectly drives a partial risk negative
    sep = torch.where(pseudo.bool(), 20.0, -20.0).double()
    pos, neg = partial_risks(sep, pseudo, w)
    assert min(float(pos), float(neg)) < 0
    r = float(robust_uu_risk(sep, pseudo, w))
    assert r > float(uu_risk(sep, pseudo, w))
    assert r == pytest.approx(float(leaky(pos) + leaky(neg)))


def test_leaky_slope_and_gradient_sign():
    x = torch.tensor([-2.0, 3.0], requires_grad=True)
    y = leaky(x, -0.001)
    assert y.tolist() == pytest.approx([0.002, 3.0])
    y.sum().backward()
    # a negative partial risk is pushed back up: its gradient is negative (descent increases it)
    assert x.grad.tolist() == pytest.approx([-0.001, 1.0])


def test_weights_reject_inverted_priors_and_dispatch():
    with pytest.raises(ValueError, match="theta_p > theta_n"):
        UUWeights.from_priors(0.5, 0.3, 0.4)
    w = UUWeights.from_priors(0.5, 0.9, 0.1)
    s = torch.zeros(4)
    p = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(batch_risk("pn", s, p, w)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown risk"):
        batch_risk("bogus", s, p, w)


def test_each_uu_coefficient_matches_its_closed_form_where_a_swap_would_show():
    """a, b, c, d against their closed forms on priors where all four differ widely, and the risk of a fixed
    batch against ``a R_P^+ - b R_P^- - c R_N^+ + d R_N^-`` computed by hand: swapping any two coefficients
    moves the risk by far more than the tolerance (checked below), so a swap in risks.py cannot pass."""
    pi, tp, tn = 0.3, 0.9, 0.2
    gap = tp - tn
    closed = {"a": pi * (1 - tn) / gap, "b": (1 - pi) * tn / gap, "c": pi * (1 - tp) / gap, "d": (1 - pi) * tp / gap}
    w = UUWeights.from_priors(pi, tp, tn)
    for k, v in closed.items():
        assert getattr(w, k) == pytest.approx(v, abs=1e-12), k
    assert min(abs(closed[x] - closed[y]) for x in "abcd" for y in "abcd" if x < y) > 0.1
    # a batch whose partial risks differ: P~ scores high (R_P^+ ~0.06, R_P^- ~0.94), N~ scores near 0 (~0.5)
    zp = torch.tensor([3.0, 2.5, 2.0, 4.0], dtype=torch.float64)
    zn = torch.tensor([0.0, 0.5, -0.5, 0.2], dtype=torch.float64)
    scores = torch.cat([zp, zn])
    pseudo = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float64)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    r = {"P+": np.mean(sig(-zp.numpy())), "P-": np.mean(sig(zp.numpy())), "N+": np.mean(sig(-zn.numpy())),
         "N-": np.mean(sig(zn.numpy()))}

    def by_hand(c):
        return c["a"] * r["P+"] - c["b"] * r["P-"] - c["c"] * r["N+"] + c["d"] * r["N-"]

    expected = by_hand(closed)
    assert float(uu_risk(scores, pseudo, w)) == pytest.approx(expected, abs=1e-9)
    pos, neg = partial_risks(scores, pseudo, w)
    assert float(pos) == pytest.approx(closed["a"] * r["P+"] - closed["c"] * r["N+"], abs=1e-9)
    assert float(neg) == pytest.approx(closed["d"] * r["N-"] - closed["b"] * r["P-"], abs=1e-9)
    for x in "abcd":  # the test has the power to see a swap
        for y in "abcd":
            if x < y:
                swapped = {**closed, x: closed[y], y: closed[x]}
                assert abs(by_hand(swapped) - expected) > 0.02, (x, y)
