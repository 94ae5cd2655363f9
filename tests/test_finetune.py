"""The joint (PNU-style) risk, HeadLearner's ``labeled=`` objective and the fine-tuning learner.

Default suite: numbers checked against the closed form, the head's w=0 path against a golden value of the code
before ``labeled`` existed, and :class:`silr.finetune.FineTuneLearner` on a tiny BERT built here (learns a word
cue through 20% flipped labels, deterministic, save/reload through safetensors, clone). Heavy: the real
all-MiniLM-L6-v2, one round on Rotten Tomatoes snippets with 20% flipped labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tinymodels import tiny_bert

from silr.learners import HeadLearner, LabeledBatches, check_labeled
from silr.risks import UUWeights, joint_risk, pn_risk, robust_uu_risk


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


# -- the joint risk -----------------------------------------------------------------------------
def test_joint_risk_closed_form():
    scores = torch.tensor([2.0, -1.0, 0.5, -0.3])
    pseudo = torch.tensor([1, 1, 0, 0])
    w = UUWeights.from_priors(0.4, 0.8, 0.1)
    corpus = robust_uu_risk(scores, pseudo, w)
    # by hand: R_P^+ = mean sigmoid(-z) over P, R_P^- = mean sigmoid(z) over P, etc.
    rpp = (_sig(-2.0) + _sig(1.0)) / 2
    rpm = (_sig(2.0) + _sig(-1.0)) / 2
    rnp = (_sig(-0.5) + _sig(0.3)) / 2
    rnm = (_sig(0.5) + _sig(-0.3)) / 2
    pos, neg = w.a * rpp - w.c * rnp, w.d * rnm - w.b * rpm
    f = lambda x: x if x > 0 else -0.001 * x  # noqa: E731
    assert float(corpus) == pytest.approx(f(pos) + f(neg), rel=1e-6)
    lab_scores, lab_y = torch.tensor([1.5, -2.0, 0.2]), torch.tensor([1, 0, 0])
    sup = (_sig(-1.5) + _sig(-2.0) + _sig(0.2)) / 3  # l(z,+1)=sigmoid(-z), l(z,-1)=sigmoid(z)
    for weight in (0.0, 0.3, 1.0):
        got = float(joint_risk(corpus, lab_scores, lab_y, weight))
        assert got == pytest.approx((1 - weight) * (f(pos) + f(neg)) + weight * sup, rel=1e-6)
    assert float(pn_risk(lab_scores, lab_y)) == pytest.approx(sup, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        joint_risk(corpus, lab_scores, lab_y, 1.5)


def test_check_labeled_and_batches():
    X = np.zeros((5, 2))
    assert check_labeled(None) is None and check_labeled((X, [0, 1, 0, 1, 1], 0.0)) is None
    Xl, y, w = check_labeled((X, [0, 1, 0, 1, 1], 0.25))
    assert y.dtype == np.int64 and w == 0.25
    with pytest.raises(ValueError, match="4 labels"):
        check_labeled((X, [0, 1, 0, 1], 0.5))
    with pytest.raises(ValueError, match="0/1"):
        check_labeled((X, [0, 2, 0, 1, 1], 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_labeled((X, [0, 1, 0, 1, 1], -0.1))
    with pytest.raises(ValueError, match="tuple"):
        check_labeled((X, [0, 1]))
    b = LabeledBatches(5, 8, seed=0)
    assert b.next().tolist() == [0, 1, 2, 3, 4]
    b = LabeledBatches(10, 4, seed=0)
    seen = np.concatenate([b.next() for _ in range(2)])
    assert len(set(seen.tolist())) == 8  # one pass visits distinct rows before reshuffling


# -- HeadLearner with labeled= --------------------------------------------------------------------
def _head_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    s = np.where(rng.random(300) < 0.25, 1 - y, y)
    vm = np.zeros(300, bool)
    vm[:40] = True
    return X, y, s, vm


def test_head_w0_is_todays_fit_and_labeled_changes_it():
    X, y, s, vm = _head_data()
    wts = UUWeights.from_priors(0.5, 0.75, 0.25)

    def fit(**kw):
        return HeadLearner(epochs=5).fit(X, s, wts, risk="robust_uu", val_mask=vm, seed=3, **kw)

    base = fit()
    g = base.decision_function(X)
    # golden value from learners.py before `labeled` existed (same data, seed and settings)
    assert float(g.sum()) == pytest.approx(40.430641174316406, rel=1e-5)
    assert float(g[:5].sum()) == pytest.approx(0.4114777147769928, rel=1e-4)
    lab = np.arange(40, 90)
    for kw in ({"labeled": None}, {"labeled": (X[lab], y[lab], 0.0)}):
        other = fit(**kw)
        for k, v in base.state_dict().items():
            assert torch.equal(v, other.state_dict()[k]), k
    joint = fit(labeled=(X[lab], y[lab], 0.5))
    assert not torch.equal(joint.state_dict()["out.weight"], base.state_dict()["out.weight"])
    # the labeled rows' gold labels pull the head toward them: lower supervised risk on those rows
    sup = lambda m: float(pn_risk(torch.from_numpy(m.decision_function(X[lab])), torch.from_numpy(y[lab])))  # noqa: E731
    assert sup(joint) < sup(base)


def test_head_labeled_sparse_and_errors():
    import scipy.sparse as sp

    X, y, s, vm = _head_data()
    Xs = sp.csr_matrix(np.abs(X))
    wts = UUWeights.from_priors(0.5, 0.75, 0.25)
    lab = np.arange(40, 90)
    h = HeadLearner(epochs=2).fit(Xs, s, wts, risk="robust_uu", val_mask=vm, seed=0, labeled=(Xs[lab], y[lab], 0.3))
    assert h.decision_function(Xs).shape == (300,)
    with pytest.raises(ValueError, match="same kind"):
        HeadLearner(epochs=1).fit(X, s, wts, risk="robust_uu", val_mask=vm, seed=0, labeled=(Xs[lab], y[lab], 0.3))
    with pytest.raises(ValueError, match="features"):
        HeadLearner(epochs=1).fit(X, s, wts, risk="robust_uu", val_mask=vm, seed=0, labeled=(X[lab, :4], y[lab], 0.3))


def test_head_clone():
    from sklearn.base import clone

    h = HeadLearner(hidden=4, epochs=7, lr=0.05)
    for c in (h.clone(), clone(h)):
        assert c.get_params() == h.get_params() and c is not h


# -- FineTuneLearner on a tiny BERT ---------------------------------------------------------------
def _tiny_bert(folder: Path) -> Path:
    return tiny_bert(folder, layers=1, max_positions=64)


def _cue_task(n: int, seed: int):
    """Texts whose class is carried by one word among neutral filler; labels flipped at 20%."""
    rng = np.random.default_rng(seed)
    filler = "the a movie plot actor scene film story music time people place".split()
    y = rng.integers(0, 2, n)
    texts = []
    for c in y:
        words = list(rng.choice(filler, 6))
        words.insert(int(rng.integers(0, 7)), "wonderful" if c else "terrible")
        texts.append(" ".join(words))
    s = np.where(rng.random(n) < 0.2, 1 - y, y)
    return texts, y, s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tinybert"))


def test_finetune_learns_deterministic_and_reloads(tiny, tmp_path):
    from safetensors.torch import load_file, save_file
    from sklearn.base import clone

    from silr.finetune import FineTuneLearner

    texts, y, s = _cue_task(240, seed=0)
    test_texts, y_test, _ = _cue_task(200, seed=1)
    vm = np.zeros(240, bool)
    vm[:30] = True
    wts = UUWeights.from_priors(0.5, 0.8, 0.2)
    kw = dict(lr=2e-3, head_lr=1e-2, epochs=3, batch_size=16, max_length=16, progress=False)
    untrained = FineTuneLearner(tiny, **kw)
    untrained._load(0)
    base_acc = np.mean((untrained.decision_function(test_texts) > 0) == y_test)
    lab = np.arange(30, 60)
    L = FineTuneLearner(tiny, **kw).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0,
                                       labeled=([texts[i] for i in lab], y[lab], 0.3))
    g = L.decision_function(test_texts)
    acc = np.mean((g > 0) == y_test)
    assert acc >= 0.8 and acc > base_acc + 0.25, (acc, base_acc)  # labels are 80% accurate
    assert len(L.history_) == 3 and L.best_epoch_ in (1, 2, 3) and all("val_loss" in h for h in L.history_)
    # same seed, same result; another seed differs
    L2 = FineTuneLearner(tiny, **kw).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0,
                                        labeled=([texts[i] for i in lab], y[lab], 0.3))
    np.testing.assert_array_equal(L2.decision_function(test_texts), g)
    # save through safetensors + JSON (no pickle) and reload
    cfg = json.loads(json.dumps(L.config()))
    assert cfg["kind"] == "finetune" and cfg["best_epoch"] == L.best_epoch_
    save_file(L.state_dict(), str(tmp_path / "w.safetensors"))
    R = FineTuneLearner.from_state(cfg, load_file(str(tmp_path / "w.safetensors")))
    np.testing.assert_allclose(R.decision_function(test_texts), g, atol=1e-5)
    for c in (L.clone(), clone(L)):
        assert c.get_params() == L.get_params() and c.module_ is None


def test_finetune_joint_weight_and_errors(tiny):
    from silr.finetune import FineTuneLearner

    texts, y, s = _cue_task(64, seed=2)
    vm = np.zeros(64, bool)
    vm[:8] = True
    wts = UUWeights.from_priors(0.5, 0.8, 0.2)
    kw = dict(lr=1e-3, epochs=1, batch_size=16, max_length=16, progress=False)
    a = FineTuneLearner(tiny, **kw).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0)
    b = FineTuneLearner(tiny, **kw).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0, labeled=(texts[:10], y[:10], 0.0))
    c = FineTuneLearner(tiny, **kw).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0, labeled=(texts[:10], y[:10], 0.5))
    np.testing.assert_array_equal(a.decision_function(texts), b.decision_function(texts))
    assert not np.array_equal(a.decision_function(texts), c.decision_function(texts))
    with pytest.raises(ValueError, match="mask"):
        FineTuneLearner(tiny, **kw).fit(texts, s[:10], wts, risk="robust_uu", val_mask=vm, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        FineTuneLearner(tiny, **{**kw, "epochs": 0}).fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        FineTuneLearner(tiny / "nope").fit(texts, s, wts, risk="robust_uu", val_mask=vm, seed=0)
    with pytest.raises(ValueError, match="no parameter"):
        FineTuneLearner().set_params(bogus=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        FineTuneLearner(tiny).decision_function(["x"])


def test_ray_train_checkpoint_resumes_the_fit_and_keeps_the_best_epoch(tiny, tmp_path):
    """The Ray Train worker's per-epoch checkpoint (engine.ray_train._save_checkpoint / _resume; no Ray needed): a
    fit stopped after epoch 1 and resumed from its checkpoint trains the next epochs exactly as the uninterrupted
    fit, and hands back the same weights when epoch 1 stays the best (its weights are the checkpoint's model.)"""
    import time

    from safetensors.torch import load_file

    from silr.engine.ray_train import _resume, _save_checkpoint
    from silr.finetune import FineTuneLearner
    from silr.finetune_steps import FineTuneSteps

    texts, y, s = _cue_task(64, seed=3)
    wts = UUWeights.from_priors(0.5, 0.8, 0.2)
    learner = FineTuneLearner(tiny, lr=2e-3, head_lr=1e-2, epochs=3, batch_size=16, max_length=16, progress=False)
    lab = ([texts[i] for i in range(8)], y[:8], 0.3)
    crit = {1: 0.5, 2: 0.7, 3: 0.6}  # held-out risks: epoch 1 is the best and stays so

    def fit(folder, stop_after=None, resume=None):
        run = FineTuneSteps(learner, texts, s, wts, "robust_uu", 0, lab)
        run.optimiser(4)
        start = _resume(run, resume) if resume else 1
        for epoch in range(start, 4):
            run.end_epoch(epoch, run.epoch(run.model, run.permutation(np.arange(64)), 16), crit[epoch],
                          time.perf_counter())
            (folder / str(epoch)).mkdir(parents=True)
            _save_checkpoint(run, folder / str(epoch), epoch)
            if epoch == stop_after:
                break
        return run, folder / str(epoch)

    def handed_back(d):  # what the driver loads from the last checkpoint
        return load_file(str(d / ("best.safetensors" if (d / "best.safetensors").exists() else "model.safetensors")))

    full, d_full = fit(tmp_path / "full")
    _, d_stop = fit(tmp_path / "stopped", stop_after=1)
    resumed, d_res = fit(tmp_path / "resumed", resume=d_stop)
    assert full.best.epoch == resumed.best.epoch == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for k, v in full.model.state_dict().items():  # epochs 2 and 3 trained exactly as without the stop
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    a, b = handed_back(d_full), handed_back(d_res)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], full.model.state_dict()["head.weight"])  # epoch 1's, not the last


# -- wired into the refiner, the run folder and the config ------------------------------------------
def test_refiner_with_finetune_learner_texts_end_to_end(tiny, tmp_path):
    """SelfIterativeRefiner(learner=FineTuneLearner(...), supervised_weight=0.3) on texts: fits, beats the 78%
    labels it started from, saves without pickle and reloads to the same scores; refine_texts records the learner."""
    from silr import SelfIterativeRefiner
    from silr.finetune import FineTuneLearner, refine_learner_params
    from silr.inputs import RefineInputs
    from silr.run_folder import predict_texts, write_run
    from silr.texts import refine_texts

    texts, y, s = _cue_task(240, seed=0)
    gold = np.full(240, -1)
    gold[:40] = y[:40]
    score = np.where(s == 1, 1.0, -1.0) + np.random.default_rng(0).normal(0, 0.5, 240)
    kw = dict(lr=2e-3, head_lr=1e-2, epochs=2, batch_size=16, max_length=16, progress=False)
    m = SelfIterativeRefiner(learner=FineTuneLearner(tiny, **kw), supervised_weight=0.3, rounds=1).fit(
        texts, s, y_gold=gold, llm_score=score)
    assert m.n_rounds_ == 1 and m.learners_[0].config()["kind"] == "finetune"
    assert np.mean(m.predict(texts, llm_score=score) == y) > np.mean(s == y) + 0.05
    m.save(tmp_path / "model")
    m2 = SelfIterativeRefiner.load(tmp_path / "model")
    np.testing.assert_allclose(m2.decision_function(texts, llm_score=score), m.decision_function(texts, llm_score=score),
                               atol=1e-5)
    # the text-level entry point (what `silr refine --finetune` calls) and the run folder
    assert refine_learner_params(False) == {} and refine_learner_params(False, 0.2) == {"supervised_weight": 0.2}
    params = refine_learner_params(True, progress=False)
    assert params["supervised_weight"] == 0.0 and isinstance(params["learner"], FineTuneLearner)
    inputs = RefineInputs(texts, s, texts[:40], y[:40], s[:40])
    res = refine_texts(inputs, rounds=1, learner=FineTuneLearner(tiny, **kw), supervised_weight=0.3)
    assert res.summary["learner"]["kind"] == "FineTuneLearner" and res.summary["learner"]["takes_texts"]
    assert res.summary["learner"]["supervised_weight"] == 0.3
    write_run(res, tmp_path / "run", report=False)
    rounds = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert rounds["learner"]["kind"] == "FineTuneLearner" and rounds["learner"]["why"].startswith("asked for")
    pred = predict_texts(tmp_path / "run", texts[:5], progress=False)
    np.testing.assert_allclose(pred["score"].to_numpy(), res.refiner.decision_function(texts[:5]), atol=1e-5)


def test_config_finetune_key():
    from silr.job import config_from_dict

    cfg = config_from_dict({"refine": {"finetune": True}})
    assert cfg.refine.finetune is True
    assert config_from_dict({}).refine.finetune is False
    with pytest.raises(Exception, match="finetune"):
        config_from_dict({"refine": {"finetune": "yes"}})


# -- the real MiniLM (heavy) ---------------------------------------------------------------------
@pytest.mark.heavy
def test_cli_refine_finetune(tmp_path):
    """`silr refine --finetune` on 200 Rotten Tomatoes snippets (20% flipped labels, 40 labeled rows), one round
    with the real MiniLM; rounds.json names the learner; `silr predict` scores new texts with it."""
    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app
    from silr.corpora import load_embedded

    d = load_embedded("rotten_tomatoes", split="train").sample(200, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = d["label"].to_numpy()
    s = np.where(rng.random(200) < 0.2, 1 - y, y)
    pd.DataFrame({"text": d["text"], "pseudo": s}).to_csv(tmp_path / "corpus.csv", index=False)
    pd.DataFrame({"text": d["text"][:40], "label": y[:40]}).to_csv(tmp_path / "labeled.csv", index=False)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["refine", str(tmp_path / "corpus.csv"), "--pseudo-col", "pseudo", "--labeled",
                                 str(tmp_path / "labeled.csv"), "--out", str(out), "--rounds", "1", "--finetune",
                                 "--no-report", "-q"])
    assert r.exit_code == 0, r.output
    rounds = json.loads((out / "rounds.json").read_text())
    assert rounds["learner"]["kind"] == "FineTuneLearner" and rounds["learner"]["supervised_weight"] == 0.0
    assert rounds["params"]["learner"]["kind"] == "FineTuneLearner"
    pd.DataFrame({"text": d["text"][:5]}).to_csv(tmp_path / "new.csv", index=False)
    r = CliRunner().invoke(app, ["predict", str(out), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv"), "-q"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 5

@pytest.mark.heavy
def test_finetune_minilm_learns_through_flipped_labels():
    """all-MiniLM-L6-v2, one fine-tuning round on 300 Rotten Tomatoes snippets with 20% flipped labels (robust UU
    with the flip rates' priors, 30 labeled rows at w=0.3): test accuracy on 300 other snippets clearly above the
    untrained model (pretrained encoder + fresh head). 23 min measured on a 2-core machine at load ~15."""
    from silr.corpora import load_embedded
    from silr.finetune import FineTuneLearner

    d = load_embedded("rotten_tomatoes", split="train")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(d), 600, replace=False)
    texts = d["text"].astype(str).to_numpy()[idx].tolist()
    y = d["label"].to_numpy()[idx].astype(int)
    tr, te = slice(0, 300), slice(300, 600)
    s = np.where(rng.random(300) < 0.2, 1 - y[tr], y[tr])
    vm = np.zeros(300, bool)
    vm[rng.choice(300, 40, replace=False)] = True
    # P~ = 80% positives, N~ = 20% positives (balanced classes, symmetric flips)
    wts = UUWeights.from_priors(float(s.mean()), 0.8, 0.2)
    kw = dict(lr=5e-5, epochs=3, batch_size=16, max_length=64, progress=False)
    untrained = FineTuneLearner(**kw)
    untrained._load(0)
    base = np.mean((untrained.decision_function(texts[te]) > 0) == y[te])
    lab = np.flatnonzero(vm)[:30]
    L = FineTuneLearner(**kw).fit(texts[tr], s, wts, risk="robust_uu", val_mask=vm, seed=0,
                                 labeled=([texts[i] for i in lab], y[lab], 0.3))
    acc = np.mean((L.decision_function(texts[te]) > 0) == y[te])
    # measured (seed 0): 0.677 against 0.600 untrained; the bound leaves a little room for BLAS differences
    assert acc > 0.65 and acc > base + 0.05, (acc, base)
