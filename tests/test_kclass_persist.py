"""Saving and loading a K-class refiner (silr.multiclass.persist): every hand-back source predicts the same after
a round trip, ``classes_`` keep their K names, and a damaged or foreign folder is refused with a clear error."""

import json

import numpy as np
import pytest

from silr.refine import SelfIterativeRefiner


def _data(K=4, n=1500, noise=0.55, seed=0, d=16):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    X = rng.normal(size=(K, d))[y] * 0.8 + rng.normal(size=(n, d))
    noisy = np.where(rng.random(n) < noise, (y + rng.integers(1, K, n)) % K, y)
    lab = rng.choice(n, 60, replace=False)
    return X, y, noisy, lab


@pytest.fixture(scope="module")
def fitted():
    X, y, noisy, lab = _data()
    names = np.array(["billing", "outage", "refund", "sales"])
    rng = np.random.default_rng(1)
    llm = np.log(np.full((y.size, 4), 0.2) + 0.6 * np.eye(4)[noisy] + 0.1 * rng.random((y.size, 4)))
    gold = np.full(y.size, None, dtype=object)
    gold[lab] = names[y[lab]]
    m = SelfIterativeRefiner(rounds=3, n_bootstrap=200).fit(X, names[noisy], y_gold=gold, llm_score=llm)
    return m, X, llm, names


@pytest.mark.parametrize("source", ["stack", "refined", "probe", "llm"])
def test_kclass_round_trip_predicts_the_same_for_every_source(fitted, tmp_path, source):
    m, X, llm, names = fitted
    assert m.final_source_ == "stack"  # the default hand-back on this data
    stack = m.handback_.fit_stack
    m.handback_.source = source
    try:
        m.save(tmp_path / "model")
        cfg = json.loads((tmp_path / "model" / "config.json").read_text())
        assert cfg["format"] == "silr-refiner-kclass/1" and cfg["classes"] == names.tolist()
        back = SelfIterativeRefiner.load(tmp_path / "model")
        assert back.classes_.tolist() == names.tolist() and back.n_classes_ == 4
        assert back.final_source_ == source and back.get_params()["rounds"] == 3
        for ev in (llm[:200], None):
            P, Q = m.predict_proba(X[:200], llm_score=ev), back.predict_proba(X[:200], llm_score=ev)
            assert Q.shape == (200, 4) and np.allclose(P, Q, atol=1e-6)
            assert (m.predict(X[:200], llm_score=ev) == back.predict(X[:200], llm_score=ev)).all()
        assert set(back.predict(X[:200])) <= set(names)
        if source == "stack":  # the stack uses the LLM evidence: a different answer than without it
            assert not np.allclose(back.predict_proba(X[:200], llm_score=llm[:200]), back.predict_proba(X[:200]))
    finally:
        m.handback_.source, m.handback_.fit_stack = "stack", stack


def test_kclass_folder_errors(fitted, tmp_path):
    m, X, _, _ = fitted
    m.save(tmp_path / "m")
    with pytest.raises(ValueError, match="expected|features"):
        SelfIterativeRefiner.load(tmp_path / "m").predict(X[:5, :8])
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["predict_round"] = len(cfg["learners"]) + 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="damaged"):
        SelfIterativeRefiner.load(tmp_path / "m")
    cfg["format"] = "something-else/1"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a silr model"):
        SelfIterativeRefiner.load(tmp_path / "m")
