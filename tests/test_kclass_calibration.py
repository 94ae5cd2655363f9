"""Reading the LLM's K scores through the labeled rows (silr.multiclass.loop): the stack's per-class (K x K) reading
of the LLM evidence, and round 0 from the scores calibrated on the labeled rows (a shared scale and per-class
offsets), kept only where it leaves no class without a corpus row; both saved and applied to new rows."""

import numpy as np
import pytest

import silr.multiclass.loop as loop
from silr.multiclass.loop import fit_kclass
from silr.multiclass.stack import SharedStack, calibrated_labels, llm_evidence
from silr.refine import SelfIterativeRefiner


def _scores(n, K=3, seed=0, skew=(2.0, 0.0, 0.0), scale=(2.5, 2.5, 0.6)):
    """Gold ``y`` and LLM log-scores that over-rate class 0 (``skew``) and barely see the last class (``scale``)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    L = np.eye(K)[y] * np.asarray(scale) + np.asarray(skew) + rng.normal(size=(n, K))
    return y, L


def test_full_reading_of_the_llm_beats_the_shared_coefficient_when_classes_are_read_differently():
    y, L = _scores(4000, seed=1)
    E = llm_evidence(L, None, 3)
    tr, te = np.arange(300), np.arange(300, 4000)
    acc = {}
    for name, kw in {"shared": {}, "full": {"llm_l2": 0.1, "llm_mode": "full"}, "diag": {"llm_l2": 0.1}}.items():
        m = SharedStack(bias_l2=0.1, K=3, **kw).fit(E[tr], y[tr])
        acc[name] = float(np.mean(m.predict(E[te]) == y[te]))
    assert acc["full"] > acc["shared"] + 0.02
    assert acc["diag"] > acc["shared"] + 0.01
    with pytest.raises(ValueError, match="llm_mode"):
        SharedStack(llm_l2=0.1, llm_mode="banded", K=3).fit(E[tr], y[tr])


def test_calibrated_round0_repairs_a_skewed_llm_and_judges_the_labeled_rows_out_of_fold():
    y, L = _scores(3000, seed=2)
    raw = L.argmax(1)
    lab = np.random.default_rng(0).choice(y.size, 60, replace=False)
    c0, c0_lab, cal = calibrated_labels(L, raw, y[lab], lab, 3, 0.1, seed=0)
    assert np.mean(c0 == y) > np.mean(raw == y) + 0.10  # the offset on class 0 is undone
    assert cal.coef_.size == 1 and cal.bias_.size == 3 and cal.bias_[0] < cal.bias_[1]
    X = np.random.default_rng(3).normal(size=(y.size, 8)) + np.eye(3)[y] @ np.random.default_rng(4).normal(size=(3, 8))
    f = fit_kclass(X, raw, y[lab], lab, X[lab], 3, llm=L, rounds=1, calibrate=(0.1, "keep_classes"), n_bootstrap=100)
    assert (f.labels[0] == c0).all() and (f.lab_labels[0] == c0_lab).all()  # the labeled rows' labels: out of fold
    assert "calibrated" in f.records[0]["source"] and f.calibrator is not None
    plain = fit_kclass(X, raw, y[lab], lab, X[lab], 3, llm=L, rounds=1, n_bootstrap=100)
    assert (plain.labels[0] == raw).all() and plain.calibrator is None and plain.records[0]["source"] == "pseudo-labels"


def test_calibrated_round0_is_not_kept_when_it_empties_a_class(monkeypatch):
    y, L = _scores(900, seed=5)
    raw = L.argmax(1)
    assert np.bincount(raw, minlength=3).min() > 0
    lab = np.arange(60)
    def drops_class_2(*a, **kw):
        c0, c0_lab, cal = calibrated_labels(*a, **kw)
        return np.where(c0 == 2, 1, c0), c0_lab, cal

    monkeypatch.setattr(loop, "calibrated_labels", drops_class_2)  # the name fit_kclass calls
    X = np.random.default_rng(6).normal(size=(y.size, 4))
    kept = fit_kclass(X, raw, y[lab], lab, X[lab], 3, llm=L, rounds=1, calibrate=(0.1, "keep_classes"), n_bootstrap=50)
    assert (kept.labels[0] == raw).all() and kept.calibrator is None
    taken = fit_kclass(X, raw, y[lab], lab, X[lab], 3, llm=L, rounds=1, calibrate=0.1, n_bootstrap=50)
    assert taken.calibrator is not None and np.bincount(taken.labels[0], minlength=3)[2] == 0


def test_refiner_with_scores_calibrates_round0_reads_them_per_class_and_saves_both(tmp_path):
    y, L = _scores(1500, seed=7)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3, 12))[y] * 0.7 + rng.normal(size=(y.size, 12))
    names = np.array(["ask", "complain", "praise"])
    gold = np.full(y.size, None, dtype=object)
    lab = rng.choice(y.size, 60, replace=False)
    gold[lab] = names[y[lab]]
    m = SelfIterativeRefiner(rounds=2, n_bootstrap=200).fit(X, names[L.argmax(1)], y_gold=gold, llm_score=L)
    hb = m.handback_
    assert m.round0_labeled_.startswith("calibrated") and hb.calibrator is not None
    # round 0 as the refiner records it is the calibrated argmax, not the LLM's own
    assert (m.labels_[0] == hb.calibrator.predict(llm_evidence(L, None, 3))).all()
    assert np.mean(m.labels_[0] == y) > np.mean(L.argmax(1) == y)
    if hb.fit_stack is not None:
        assert hb.fit_stack.llm_mode == "full" and hb.fit_stack.llm_dev_.size == 9
    # the LLM's labels for new rows are read through the same calibration, before and after a round trip
    hb.source = "llm"
    new = L[:300] + 0.0
    want = names[hb.calibrator.predict(llm_evidence(new, None, 3))]
    assert (m.predict(X[:300], llm_score=new) == want).all() and (want != names[new.argmax(1)]).any()
    m.save(tmp_path / "m")
    back = SelfIterativeRefiner.load(tmp_path / "m")
    assert (back.predict(X[:300], llm_score=new) == want).all()
    assert np.allclose(back.predict_proba(X[:300], llm_score=new), m.predict_proba(X[:300], llm_score=new))
