"""LocalLMScorer on tiny random causal LMs built here (no big model): batched + prefix-KV-cached scores must
equal the plain one-at-a-time scores; truncation is counted."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from silr.annotate.local import LocalLMScorer, resolve_model_dir  # noqa: E402
from silr.annotate.prompts import ShotPlan, load_prompt, spec_from_instruction  # noqa: E402
from silr.annotate.types import AnnotationError  # noqa: E402

WORDS = ("the a film movie was is great awful good bad boring fun plot actors story really not very dull "
         "brilliant mess script long short funny sad text label yes no positive negative satire news sentiment "
         "decide whether each expresses or opinion : . , !").split()


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "\n"] + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                 pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation("isolated")])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", pad_token="[PAD]", unk_token="[UNK]")


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny_model_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    tok = _tokenizer()
    v = len(tok)
    if request.param == "llama":
        cfg = transformers.LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                                       initializer_range=0.3, bos_token_id=2, pad_token_id=0, eos_token_id=None)
    else:  # sliding-window layers with a window far shorter than the few-shot prefix
        cfg = transformers.Gemma3TextConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                            sliding_window=8, max_position_embeddings=4096,
                                            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                            initializer_range=0.3, bos_token_id=2, pad_token_id=0, eos_token_id=None)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    d = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    content = [w for w in WORDS if w.isalpha()]
    return [" ".join(rng.choice(content, size=int(rng.integers(1, 25)))) for _ in range(n)]


def _plan(shots=4):
    spec = spec_from_instruction("decide whether each text is positive or negative", "positive,negative",
                                 base=load_prompt("generic"))
    lab = _texts(12, seed=1)
    return ShotPlan(spec, lab, [1, 0] * 6, shots=shots, seed=0)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_batched_prefix_cached_equals_plain(tiny_model_dir, batch_size):
    sc = LocalLMScorer(tiny_model_dir, batch_size=batch_size, max_text_tokens=64)
    prompt = _plan().main
    texts = _texts(23)
    fast = dict(sc.score(texts, prompt))
    assert sorted(fast) == list(range(len(texts)))
    plain = sc.score_plain(texts, prompt)
    a = np.array([fast[i].score for i in range(len(texts))])
    b = np.array([r.score for r in plain])
    assert np.all(np.isfinite(a))
    assert a.std() > 1e-2  # the check is meaningful: scores do vary
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    # the prefix is long compared to gemma's sliding window (8): the cached path must still agree
    assert len(sc._prefix_ids(prompt.prefix)) > 8


def test_prefix_cache_reused_and_not_mutated(tiny_model_dir):
    sc = LocalLMScorer(tiny_model_dir, batch_size=4)
    prompt = _plan().main
    texts = _texts(9, seed=5)
    first = dict(sc.score(texts, prompt))
    assert len(sc._prefix_cache) == 1
    again = dict(sc.score(texts[::-1], prompt))  # same prefix cache, different batches
    for i, t in enumerate(texts[::-1]):
        assert again[i].score == pytest.approx(first[len(texts) - 1 - i].score, abs=1e-5)


def test_truncation_is_counted(tiny_model_dir, caplog):
    sc = LocalLMScorer(tiny_model_dir, batch_size=8, max_text_tokens=5)
    prompt = _plan().main
    texts = ["great film", "the film was great fun and the actors really good", "bad", "a b c d e f g h"]
    res = dict(sc.score(texts, prompt))
    assert [res[i].truncated for i in range(4)] == [False, True, False, True]
    assert sc.n_truncated == 2
    # truncated text scores like its first 5 tokens
    cut = dict(sc.score(["the film was great fun"], prompt))[0]
    assert res[1].score == pytest.approx(cut.score, abs=1e-5)
    plain = sc.score_plain(texts, prompt)
    np.testing.assert_allclose([res[i].score for i in range(4)], [r.score for r in plain], atol=1e-4)


def test_label_words_must_differ_in_first_token(tiny_model_dir):
    sc = LocalLMScorer(tiny_model_dir)
    spec = spec_from_instruction("x", "[UNK]1,[UNK]2", base=load_prompt("generic"))  # both map to [UNK]
    plan = ShotPlan(spec, [], [], shots=0)
    with pytest.raises(AnnotationError, match="first token"):
        list(sc.score(["great"], plan.main))


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotationError, match="neither"):
        resolve_model_dir(tmp_path / "nothing-here")


def test_cli_with_local_model_dir(tiny_model_dir, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app

    if "gemma3" in str(tiny_model_dir):
        pytest.skip("one model is enough for the CLI")
    texts = _texts(15, seed=9)
    pd.DataFrame({"text": texts + texts[:3]}).to_csv(tmp_path / "corpus.csv", index=False)
    pd.DataFrame({"text": _texts(8, seed=10), "label": [1, 0] * 4}).to_csv(tmp_path / "lab.csv", index=False)
    out = tmp_path / "out.csv"
    args = ["annotate", str(tmp_path / "corpus.csv"), "--out", str(out), "--model", str(tiny_model_dir),
            "--instruction", "decide whether each text is positive or negative", "--label-words",
            "positive,negative", "--labeled", str(tmp_path / "lab.csv"), "--shots", "4", "--max-text-tokens", "3",
            "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "--threshold", "prior"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out)
    assert len(got) == 18 and got["llm_score"].notna().all() and set(got["pseudo_label"]) <= {0, 1}
    rec = json.loads((tmp_path / "out.csv.annotation.json").read_text())
    uniq = set(texts) | set(_texts(8, seed=10))
    assert rec["counts"]["scored"] == len(uniq) and rec["counts"]["cached"] == 0
    assert rec["counts"]["truncated"] == sum(len(t.split()) > 3 for t in uniq)
    assert rec["threshold"]["method"] == "prior" and len(rec["prompt"]["shots"]) == 4
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rec2 = json.loads((tmp_path / "out.csv.annotation.json").read_text())
    assert rec2["counts"]["scored"] == 0 and rec2["counts"]["cached"] == len(uniq)
    pd.testing.assert_frame_equal(pd.read_csv(out), got)


def test_score_and_embed_is_one_pass_of_both(tiny_model_dir):
    """The hidden state is the one the label word is read from: scores from score_and_embed equal score(),
    the states equal embed(), and the LM head applied to the state gives the score back."""
    sc = LocalLMScorer(tiny_model_dir, batch_size=5, max_text_tokens=64)
    prompt = _plan().main
    texts = _texts(17, seed=3)
    res, H = sc.score_and_embed(texts, prompt)
    alone = dict(sc.score(texts, prompt))
    np.testing.assert_allclose([r.score for r in res], [alone[i].score for i in range(len(texts))], atol=1e-5)
    E = sc.embed(texts, prompt)
    assert H.shape == E.shape == (len(texts), 32)
    np.testing.assert_allclose(H, E, atol=1e-5)
    assert np.linalg.matrix_rank(H) > 5  # the rows differ: real states, not a constant
    pos, neg = sc.label_token_ids(prompt.positive, prompt.negative)
    with torch.no_grad():
        back = sc._scores_from_hidden(torch.from_numpy(H), pos, neg).numpy()
    np.testing.assert_allclose(back, [r.score for r in res], atol=1e-4)


def test_middle_layer_state_from_the_same_pass(tiny_model_dir, tmp_path):
    """``layer=k``: the features are hidden_states[k] at the text's last prompt token (checked against a plain
    full-prompt forward pass), the scores still come from the final state, the cache keeps layers apart, and a
    saved spec reloads the same layer; a layer the model does not have is refused by name."""
    from silr.backbones import load_backbone
    from silr.backbones.prompted import PromptedLMEncoder

    sc = LocalLMScorer(tiny_model_dir, batch_size=4, max_text_tokens=64)
    prompt = _plan().main
    texts = _texts(9, seed=5)
    res, H1 = sc.score_and_embed(texts, prompt, layer=1)
    alone = dict(sc.score(texts, prompt))
    np.testing.assert_allclose([r.score for r in res], [alone[i].score for i in range(len(texts))], atol=1e-5)
    np.testing.assert_allclose(sc.embed(texts, prompt, layer=1), H1, atol=1e-5)
    assert not np.allclose(H1, sc.embed(texts, prompt), atol=1e-3)
    pre = sc._prefix_ids(prompt.prefix)
    for i in (0, 4):
        ids = torch.tensor([pre + sc._suffix_ids(prompt, texts[i])[0]])
        with torch.no_grad():
            hs = sc._head()[0](input_ids=ids, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(H1[i], hs[1][0, -1].numpy(), atol=1e-4)
    plan = _plan()
    final = PromptedLMEncoder(plan, tiny_model_dir, cache_dir=tmp_path, progress=False, scorer=sc)
    mid = PromptedLMEncoder(plan, tiny_model_dir, cache_dir=tmp_path, progress=False, scorer=sc, layer=1)
    assert mid.model_id != final.model_id
    Xm, Xf = mid.transform(texts), final.transform(texts)
    np.testing.assert_allclose(Xm, H1, atol=1e-5)
    assert not np.allclose(Xm, Xf, atol=1e-3)
    again = load_backbone(json_roundtrip(mid.spec()), tmp_path)
    assert again.layer == 1 and again.model_id.endswith("-hidden-L1")
    new = _texts(3, seed=98)
    np.testing.assert_allclose(again.scorer.embed(new, again.prompt, again.layer), sc.embed(new, prompt, layer=1),
                               atol=1e-5)
    with pytest.raises(ValueError, match="layer must be between 0 and"):
        PromptedLMEncoder(plan, tiny_model_dir, cache_dir=tmp_path, scorer=sc, layer=99)


def test_prompted_backbone_caches_and_reloads(tiny_model_dir, tmp_path, monkeypatch):
    from silr.backbones import load_backbone
    from silr.backbones.prompted import PromptedLMEncoder

    if "gemma3" in str(tiny_model_dir):
        pytest.skip("one model is enough here")
    plan = _plan()
    enc = PromptedLMEncoder(plan, tiny_model_dir, cache_dir=tmp_path, progress=False)
    shot_text = plan.main.shots[0].text
    texts = _texts(10, seed=4) + [shot_text]
    X = enc.transform(texts)
    assert X.shape == (11, enc.dim) and np.isfinite(X).all()
    # a shot is encoded under the leave-itself-out prompt, exactly as it was scored
    alt = plan.prompt_for(shot_text)
    assert alt.hash != plan.main.hash
    np.testing.assert_allclose(X[-1], enc.scorer.embed([shot_text], alt)[0], atol=1e-5)
    assert not np.allclose(X[-1], enc.scorer.embed([shot_text], plan.main)[0], atol=1e-3)
    # second call: every row from the cache, the model is not run
    monkeypatch.setattr(type(enc.scorer), "embed", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    np.testing.assert_array_equal(enc.transform(texts), X)
    monkeypatch.undo()
    # the spec rebuilds the same prompt (no pickle): same features for new texts
    spec = json_roundtrip(enc.spec())
    again = load_backbone(spec, tmp_path)
    assert again.model_id == enc.model_id
    new = _texts(4, seed=99)
    np.testing.assert_allclose(again.scorer.embed(new, again.prompt), enc.scorer.embed(new, plan.main), atol=1e-5)


def json_roundtrip(d):
    import json

    return json.loads(json.dumps(d))


def test_run_with_llm_backbone_scores_each_text_once(tiny_model_dir, tmp_path, monkeypatch):
    """`silr run` with [refine] backbone = "llm": the annotating model's hidden states are the features, the
    annotation and the features come from one forward pass per text, and the saved model reloads (no pickle)
    and scores new texts with its own LLM evidence."""
    import pandas as pd

    from silr.run_folder import load_model, predict_texts
    from silr.job import config_from_dict, run_job

    if "gemma3" in str(tiny_model_dir):
        pytest.skip("one model is enough here")
    rng = np.random.default_rng(0)
    texts = list(dict.fromkeys(_texts(400, seed=21)))
    gold = rng.integers(0, 2, len(texts))
    pd.DataFrame({"text": texts, "gold": gold}).to_csv(tmp_path / "corpus.csv", index=False)
    cfg = config_from_dict({
        "data": {"corpus": "corpus.csv", "gold_col": "gold"},
        "labeled": {"sample_from_gold": 40},
        "annotator": {"model": str(tiny_model_dir), "instruction": "decide whether each text is positive or negative",
                      "label_words": "positive,negative", "shots": 4, "threshold": "prior"},
        "refine": {"backbone": "llm", "rounds": 2},
    }, base_dir=tmp_path)
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    calls = {"score": 0, "embed": 0}
    orig_score, orig_sae = LocalLMScorer.score, LocalLMScorer.score_and_embed

    def counted_score(self, ts, prompt):
        calls["score"] += len(ts)
        yield from orig_score(self, ts, prompt)

    def counted_sae(self, ts, prompt):
        calls["embed"] += len(ts)
        return orig_sae(self, ts, prompt)

    monkeypatch.setattr(LocalLMScorer, "score", counted_score)
    monkeypatch.setattr(LocalLMScorer, "score_and_embed", counted_sae)
    summary = run_job(cfg, tmp_path / "out", echo=lambda m: None, progress=False)
    assert calls["score"] == 0  # every score came from the shared pass
    assert calls["embed"] == len(set(texts))
    assert summary["backbone"]["kind"] == "prompted-lm" and summary["backbone"]["dim"] == 32
    refiner, bb = load_model(tmp_path / "out")
    assert type(bb).__name__ == "PromptedLMEncoder"
    new = _texts(6, seed=77)
    pred = predict_texts(tmp_path / "out", new, progress=False)
    assert len(pred) == 6 and pred["proba"].between(0, 1).all()


def test_cli_dtype_bfloat16_is_recorded_and_cached_apart(tiny_model_dir, tmp_path):
    """`silr annotate --dtype bfloat16` scores with the model in bf16: the record says so, the scores are close to
    float32's but are not served from float32's cache entries; a dtype that does not exist is refused by name."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app

    if "gemma3" in str(tiny_model_dir):
        pytest.skip("one model is enough for the CLI")
    pd.DataFrame({"text": _texts(12, seed=21)}).to_csv(tmp_path / "corpus.csv", index=False)
    base = ["annotate", str(tmp_path / "corpus.csv"), "--model", str(tiny_model_dir), "--instruction",
            "decide whether each text is positive or negative", "--label-words", "positive,negative",
            "--cache-dir", str(tmp_path / "cache")]
    r32 = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a.csv")])
    r16 = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b.csv"), "--dtype", "bfloat16"])
    assert r32.exit_code == 0 and r16.exit_code == 0, r32.output + r16.output
    rec = json.loads((tmp_path / "b.csv.annotation.json").read_text())
    assert rec["model"].get("dtype") == "bfloat16" and rec["counts"]["cached"] == 0
    a, b = pd.read_csv(tmp_path / "a.csv")["llm_score"], pd.read_csv(tmp_path / "b.csv")["llm_score"]
    assert not np.allclose(a, b, atol=1e-6) and np.corrcoef(a, b)[0, 1] > 0.9
    bad = CliRunner().invoke(app, base + ["--out", str(tmp_path / "c.csv"), "--dtype", "float8"])
    assert bad.exit_code != 0 and "--dtype" in bad.output
