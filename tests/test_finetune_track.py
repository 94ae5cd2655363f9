"""The fine-tuning track's refiner path (silr.bench.finetune_refiner, finetune_posthoc) on a tiny BERT.

The fine-tuned refiner (SelfIterativeRefiner + FineTuneLearner, texts as X) records per-round test accuracy,
which learner ran and what it handed back, and stores per-round scores for the post-hoc variants; the post-hoc
stack reads gold only on the labeled rows; LLM-free methods are reused across LLM settings only when the
labeled rows and parameters match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tinymodels import tiny_bert


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cue(n: int, seed: int, flip: float = 0.25):
    rng = np.random.default_rng(seed)
    filler = "the a movie plot actor scene film story music time people place".split()
    y = rng.integers(0, 2, n)
    texts = []
    for c in y:
        words = list(rng.choice(filler, 6))
        words.insert(int(rng.integers(0, 7)), "wonderful" if c else "terrible")
        texts.append(" ".join(words))
    s = np.where(rng.random(n) < flip, 1 - y, y)
    score = np.where(s == 1, 1.0, -1.0) + rng.normal(0, 0.5, n)
    return texts, y, s, score


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    tiny = tiny_bert(tmp_path_factory.mktemp("tinybert"), layers=1, max_positions=64)
    texts, y, s, sc = _cue(300, 0)
    tt, yt, st, sct = _cue(100, 1)
    inp = {"name": "toy", "texts": texts, "test_texts": tt, "y": y, "yt": yt, "s": s, "s_test": st,
           "lab": np.arange(40), "llm_score": sc, "llm_score_test": sct}
    ft = dict(model_dir=str(tiny), lr=2e-3, head_lr=1e-2, epochs=2, batch_size=16, max_length=16)
    return inp, ft


def test_silr_ftr_rounds_learner_and_scores(cell, tmp_path):
    from silr.bench.finetune_refiner import m_silr_ftr

    inp, ft = cell
    out = m_silr_ftr(inp, seed=0, params={"silr_ftr": {**ft, "w": 0.3}}, progress=False, rounds=2,
                     scores_path=tmp_path / "toy__seed0__silr_ftr.npz")
    info, rounds = out["info"], out["rounds"]
    assert info["learner"] == "FineTuneLearner" and info["w"] == 0.3
    assert info["final_source"] in ("llm", "refined", "stack", "probe")
    assert [r["round"] for r in rounds] == list(range(info["n_rounds"] + 1)) and info["n_rounds"] >= 1
    for r in rounds[1:]:  # every trained round has its test accuracy and its fit time
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["test_acc_round_alone"] <= 1 and r["fit_cpu_seconds"] >= 0
    z = np.load(tmp_path / "toy__seed0__silr_ftr.npz")
    assert z["test_raw"].shape == (info["n_rounds"], 100) and z["labels"].shape == (info["n_rounds"] + 1, 300)
    # round 1's stored test scores give the recorded round-1 accuracy
    assert np.mean((z["test_raw"][0] > 0) == inp["yt"]) == pytest.approx(rounds[1]["test_acc_round_alone"])
    assert np.mean(out["test_pred"] == inp["yt"]) > 0.6  # learns the cue through 25% flips


def test_posthoc_stack_reads_gold_only_on_labeled_rows(cell, tmp_path):
    from silr.bench.finetune_posthoc import posthoc_variants

    inp, _ = cell
    rng = np.random.default_rng(0)
    # a fine-tuned view that is right on the corpus and test rows: the stack must use it
    corpus = np.where(inp["y"] == 1, 1.0, -1.0) + rng.normal(0, 0.3, 300)
    test = np.where(inp["yt"] == 1, 1.0, -1.0) + rng.normal(0, 0.3, 100)
    np.savez(tmp_path / "toy__seed0__ft_llm.npz", corpus=corpus, test=test)
    ph = posthoc_variants(inp, tmp_path, 0, probe=False)
    assert ph["stack_llm_ftllm"]["test_acc"] > 0.95
    # scrambling the gold of every unlabeled corpus row changes nothing (gold is read on the 40 rows only)
    y2 = inp["y"].copy()
    y2[40:] = rng.permutation(y2[40:])
    ph2 = posthoc_variants({**inp, "y": y2}, tmp_path, 0, probe=False)
    assert ph2["stack_llm_ftllm"]["test_acc"] == ph["stack_llm_ftllm"]["test_acc"]


def test_llm_free_methods_reused_only_when_rows_and_params_match(tmp_path):
    from silr.bench.finetune_track import _reusable

    rows = [1, 2, 3]
    a = tmp_path / "main"
    a.mkdir()
    rec = {"labeled_rows": rows, "methods": {"ft50": {"test_acc": 0.7, "params": {}, "error": None}}}
    (a / "toy__seed0.json").write_text(json.dumps(rec))
    b = tmp_path / "shot0"
    b.mkdir()
    got = _reusable(b, "toy", 0, "ft50", rows, {})
    assert got is not None and got[1] == "main" and got[0]["test_acc"] == 0.7
    assert _reusable(b, "toy", 0, "ft50", [1, 2, 4], {}) is None  # other labeled rows
    assert _reusable(b, "toy", 0, "ft50", rows, {"ft50": {"lr": 1e-4}}) is None  # other parameters
    assert _reusable(b, "toy", 1, "ft50", rows, {}) is None  # other seed


def test_lr50_on_llm_features_is_never_reused(tmp_path):
    """LR on 50 rows reads the track's frozen features: on the LLM's own hidden state they depend on the prompt
    that scored the cell, so such a run is never borrowed from (or lent to) another tag; on MiniLM it is."""
    from silr.bench.finetune_track import _reusable

    rows = [1, 2, 3]
    for tag, feats in (("main", "minilm"), ("shot0_llm", "llm")):
        d = tmp_path / tag
        d.mkdir()
        rec = {"labeled_rows": rows, "features": feats,
               "methods": {"lr50": {"test_acc": 0.6 if feats == "minilm" else 0.8, "params": {}, "error": None}}}
        (d / "toy__seed0.json").write_text(json.dumps(rec))
    other = tmp_path / "shot1_llm"
    other.mkdir()
    assert _reusable(other, "toy", 0, "lr50", rows, {}, "llm") is None
    got = _reusable(tmp_path / "shot0", "toy", 0, "lr50", rows, {}, "minilm")
    assert got is not None and got[1] == "main" and got[0]["test_acc"] == 0.6


def test_ft_on_llm_labels_reused_only_under_the_same_prompt_and_threshold(tmp_path):
    """MiniLM fine-tuned on the LLM's labels reads the texts and those labels only: a run under another feature
    setting of the same prompt and threshold is the same run; another prompt or threshold is not."""
    from silr.bench.finetune_track import _reusable

    rows = [1, 2, 3]
    d = tmp_path / "shot0"
    d.mkdir()
    rec = {"labeled_rows": rows, "threshold": -0.5, "llm_scores": {"prompt_hash": "abc"},
           "methods": {"ft_llm": {"test_acc": 0.61, "params": {}, "error": None}}}
    (d / "toy__seed0.json").write_text(json.dumps(rec))
    here = tmp_path / "shot0_llm"
    here.mkdir()
    got = _reusable(here, "toy", 0, "ft_llm", rows, {}, "llm", {"prompt_hash": "abc", "threshold": -0.5})
    assert got is not None and got[0]["test_acc"] == 0.61
    assert _reusable(here, "toy", 0, "ft_llm", rows, {}, "llm", {"prompt_hash": "xyz", "threshold": -0.5}) is None
    assert _reusable(here, "toy", 0, "ft_llm", rows, {}, "llm", {"prompt_hash": "abc", "threshold": 0.1}) is None
    assert _reusable(here, "toy", 0, "ft_llm", rows, {}, "llm", None) is None
