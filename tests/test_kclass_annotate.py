"""K-class annotation: K label words, one forward pass per text, log-probabilities normalised over the K words."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from silr.annotate.local import LocalLMScorer  # noqa: E402
from silr.annotate.types import AnnotationError  # noqa: E402
from silr.multiclass.annotate import center_scores, kclass_scores, kprompt_from_words, load_kprompt  # noqa: E402

WORDS = ("the a match game vote party chip phone won lost law new fast slow team election computer "
         "topic of this text answer with one word sports politics tech : . ,").split()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "\n"] + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation("isolated")])
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   initializer_range=0.3, bos_token_id=2, pad_token_id=0, eos_token_id=None)
    d = tmp_path_factory.mktemp("tiny-kclass")
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    content = [w for w in WORDS[:17]]
    return [" ".join(rng.choice(content, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_kclass_scores_are_normalised_and_batching_does_not_change_them(tiny_lm):
    p = kprompt_from_words("sports,politics,tech", "topic of this text")
    texts = _texts(11)
    a, _ = kclass_scores(LocalLMScorer(tiny_lm, batch_size=1), texts, p)
    b, _ = kclass_scores(LocalLMScorer(tiny_lm, batch_size=4), texts, p)
    assert a.shape == (11, 3)
    assert np.allclose(np.exp(a).sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # the same numbers as the full model's next-token distribution restricted to the three words
    sc = LocalLMScorer(tiny_lm)
    ids = [sc._encode(" " + w)[0] for w in p.label_words]
    full = sc._prefix_ids(p.prefix) + sc._encode(p.suffix(p.clip(texts[0])[0]))
    with torch.inference_mode():
        lp = torch.log_softmax(sc.model(input_ids=torch.tensor([full])).logits[0, -1].float(), -1)[ids]
    np.testing.assert_allclose(a[0], torch.log_softmax(lp, -1).numpy(), atol=1e-4)


def test_prompt_files_and_bad_label_words(tmp_path, tiny_lm):
    f = tmp_path / "p.toml"
    f.write_text('instruction = "topic of this text"\nlabel_words = ["sports", "politics", "tech"]\n'
                 'template = "text : {text}\\nanswer :"\n')
    p = load_kprompt(f)
    assert p.K == 3 and p.suffix("x").startswith("text : x")
    bad = tmp_path / "b.toml"
    bad.write_text('instruction = "x"\nlabel_words = "sports,politics"\n')
    with pytest.raises(AnnotationError, match="must be a list"):
        load_kprompt(bad)
    bad.write_text('instruction = "x"\nlabel_words = ["a", "b"]\ncolour = 1\n')
    with pytest.raises(AnnotationError, match="unknown field 'colour'"):
        load_kprompt(bad)
    with pytest.raises(AnnotationError, match="repeated"):
        kprompt_from_words("sports,politics,sports")
    with pytest.raises(AnnotationError, match="at least two"):
        kprompt_from_words("sports")
    # "won" and "[UNK]"-mapped words share the unknown token: a clear error
    with pytest.raises(AnnotationError, match="same token"):
        kclass_scores(LocalLMScorer(tiny_lm), ["the game"], kprompt_from_words("zebra,yak,sports"))


def test_cli_kclass_annotate(tiny_lm, tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app

    pd.DataFrame({"text": _texts(9, seed=3)}).to_csv(tmp_path / "c.csv", index=False)
    out = tmp_path / "o.csv"
    r = CliRunner().invoke(app, ["kclass", "annotate", str(tmp_path / "c.csv"), "--out", str(out), "--model", str(tiny_lm),
                                 "--label-words", "sports,politics,tech", "--instruction", "topic of this text", "-q"])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out)
    lp = got[["llm_logp_sports", "llm_logp_politics", "llm_logp_tech"]].to_numpy()
    assert np.allclose(np.exp(lp).sum(1), 1, atol=1e-5)
    assert (got["llm_label"] == np.array(["sports", "politics", "tech"])[lp.argmax(1)]).all()
    r = CliRunner().invoke(app, ["kclass", "annotate", str(tmp_path / "c.csv"), "--out", str(out), "--model", str(tiny_lm),
                                 "--label-words", "sports,politics,tech", "--instruction", "topic of this text", "--center", "-q"])
    assert r.exit_code == 0, r.output
    got2 = pd.read_csv(out)
    np.testing.assert_allclose(got2[["llm_logp_sports", "llm_logp_politics", "llm_logp_tech"]].to_numpy(), lp, atol=1e-6)
    c = lp - lp.mean(0)
    assert (got2["llm_label"] == np.array(["sports", "politics", "tech"])[c.argmax(1)]).all()
    r = CliRunner().invoke(app, ["kclass", "annotate", str(tmp_path / "c.csv"), "--out", str(out), "--model", str(tiny_lm)])
    assert r.exit_code != 0 and "--label-words" in (r.output + str(r.exception))


@pytest.mark.heavy
def test_gemma_kclass_annotation_on_real_texts():
    """Real Gemma-3-270M, zero-shot, on a handful of clear texts: scores normalised, the obvious ones right."""
    sc = LocalLMScorer("gemma-3-270m", batch_size=4)
    p = kprompt_from_words("sports,politics,technology", "What is the topic of this text?")
    texts = ["The team won the football match 3-1 after a late goal.",
             "Parliament voted on the new election law after a long debate.",
             "The new smartphone has a faster chip and a better camera.",
             "The striker scored twice and the club moved to the top of the league."]
    lp, _ = kclass_scores(sc, texts, p)
    assert np.allclose(np.exp(lp).sum(1), 1, atol=1e-6)
    # zero-shot, the 270M model leans to the first word (measured: 'sports' for all four); each word's score is
    # still highest on its own topic's text
    assert lp[:3].argmax(0).tolist() == [0, 1, 2]
    # label-free centring (each class's mean over the texts removed) puts the argmax right on 3 of the 4
    assert (center_scores(lp).argmax(1) == np.array([0, 1, 2, 0])).sum() >= 3


def test_silr_annotate_with_three_label_words_is_kclass(tiny_lm, tmp_path):
    """The ordinary `silr annotate`: 3+ label words (or a prompt file with 3+) run the K-class annotation; the same
    numbers as `silr kclass annotate`; binary-only options are refused by name."""
    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app

    pd.DataFrame({"text": _texts(9, seed=3)}).to_csv(tmp_path / "c.csv", index=False)
    base = ["annotate", str(tmp_path / "c.csv"), "--model", str(tiny_lm), "-q"]
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "o.csv"), "--label-words", "sports,politics,tech",
                                        "--instruction", "topic of this text"])
    assert r.exit_code == 0, (r.output, r.exception)
    got = pd.read_csv(tmp_path / "o.csv")
    r = CliRunner().invoke(app, ["kclass", "annotate", str(tmp_path / "c.csv"), "--out", str(tmp_path / "k.csv"),
                                 "--model", str(tiny_lm), "--label-words", "sports,politics,tech", "--instruction",
                                 "topic of this text", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    alias = pd.read_csv(tmp_path / "k.csv")
    cols = ["llm_logp_sports", "llm_logp_politics", "llm_logp_tech"]
    np.testing.assert_allclose(got[cols].to_numpy(), alias[cols].to_numpy(), atol=1e-5)
    assert (got["llm_label"] == np.array(["sports", "politics", "tech"])[got[cols].to_numpy().argmax(1)]).all()
    import json

    rec = json.loads((tmp_path / "o.csv.annotation.json").read_text())
    assert rec["kind"] == "kclass" and rec["counts"]["rows"] == 9 and sum(rec["counts"]["per_class"].values()) == 9
    f = tmp_path / "p.toml"
    f.write_text('instruction = "topic of this text"\nlabel_words = ["sports", "politics", "tech"]\n')
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "p.csv"), "--prompt", str(f)])
    assert r.exit_code == 0, (r.output, r.exception)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")[cols].to_numpy(), got[cols].to_numpy(), atol=1e-5)
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "x.csv"), "--label-words", "sports,politics,tech",
                                        "--threshold", "0.5"])
    assert r.exit_code != 0 and "--threshold is for two label words" in (r.output + str(r.exception))


@pytest.mark.parametrize("shots", [0, 3])
def test_silr_run_kclass_annotates_refines_evaluates(tiny_lm, tmp_path, shots):
    """`silr run` with [annotator] label_words = 3 words: annotate -> refine -> evaluate -> report, one folder;
    zero-shot, or with one example per class from the labeled sample (sample_from_gold's rows)."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app

    texts = _texts(90, seed=5)
    topic = {"match": "sports", "game": "sports", "team": "sports", "won": "sports", "vote": "politics",
             "party": "politics", "law": "politics", "election": "politics"}
    gold = [next((topic[w] for w in t.split() if w in topic), "tech") for t in texts]
    pd.DataFrame({"text": texts, "gold": gold}).to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "job.toml").write_text(
        f'[data]\ncorpus = "c.csv"\ngold_col = "gold"\n[labeled]\nsample_from_gold = 30\n'
        f'[annotator]\nmodel = "{tiny_lm}"\ninstruction = "topic of this text"\nlabel_words = "sports,politics,tech"\n'
        f'shots = {shots}\n[refine]\nbackbone = "ngram"\nrounds = 1\n')
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    run = tmp_path / "run"
    ann = pd.read_csv(run / "annotated.csv")
    assert "gold" not in ann.columns and {"llm_label", "llm_logp_sports"} <= set(ann.columns)
    s = json.loads((run / "rounds.json").read_text())
    assert s["classes"] == ["politics", "sports", "tech"] and s["annotation"]["kind"] == "kclass"
    assert s["n_labeled"] == 30 and "T" in s["rounds"][0]
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["n"] == 90
    assert ev["per_round"][0]["accuracy"] == pytest.approx((ann["llm_label"] == pd.Series(gold)).mean())
    assert (run / "report.html").exists() and (run / "gold.csv").exists()
    ex = s["annotation"]["prompt"].get("examples", [])
    if shots:  # one example per class, each a labeled row with its gold label
        assert len(ex) == 3 and sorted(e["label"] for e in ex) == ["politics", "sports", "tech"]
        assert all(gold[texts.index(e["text"])] == e["label"] for e in ex)
        assert len(s["annotation"]["shots"]["labeled_rows"]) == 3
    else:
        assert ex == [] and "shots" not in s["annotation"]


def test_kclass_few_shot_from_the_labeled_sample(tiny_lm, tmp_path):
    """`silr annotate` with 3+ label words and --labeled: examples from the labeled sample in the prompt (one per
    class by default), an example's own text scored without itself; the scores differ from zero-shot ones and equal
    kclass_scores with the plan's prompts; --shots without --labeled and a label that is no label word are errors.
    The default 4 examples are rounded up to 2 per class here."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from silr.cli import app
    from silr.multiclass.shots import KShotPlan

    texts = _texts(12, seed=5)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    lab = pd.DataFrame({"text": texts[:6], "label": ["sports", "politics", "tech", "sports", "politics", "tech"]})
    lab.to_csv(tmp_path / "l.csv", index=False)
    words = "sports,politics,tech"
    base = ["annotate", str(tmp_path / "c.csv"), "--model", str(tiny_lm), "-q", "--label-words", words,
            "--instruction", "topic of this text"]
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "z.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "f.csv"), "--labeled", str(tmp_path / "l.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    cols = ["llm_logp_sports", "llm_logp_politics", "llm_logp_tech"]
    zero, few = pd.read_csv(tmp_path / "z.csv")[cols].to_numpy(), pd.read_csv(tmp_path / "f.csv")[cols].to_numpy()
    assert np.abs(zero - few).max() > 1e-3
    rec = json.loads((tmp_path / "f.csv.annotation.json").read_text())
    assert rec["shots"]["per_class"] == 2 and len(rec["prompt"]["examples"]) == 6
    assert sorted(e["label"] for e in rec["prompt"]["examples"]) == ["politics"] * 2 + ["sports"] * 2 + ["tech"] * 2
    # the same numbers as the plan's prompts: the main one, and for an example's own text the one without it
    spec = kprompt_from_words(words, "topic of this text")
    plan = KShotPlan(spec, lab["text"].tolist(), lab["label"].tolist(), shots=4, seed=0)
    sc = LocalLMScorer(tiny_lm)
    for i in (0, 1, 2, 6, 11):
        p = plan.prompt_for(texts[i])
        if texts[i] in [x for x, _ in plan.examples]:
            assert texts[i] not in [x for x, _ in p.examples] and len(p.examples) == 5  # no spare of its class
        np.testing.assert_allclose(few[i], kclass_scores(sc, [texts[i]], p)[0][0], atol=1e-4)
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "x.csv"), "--shots", "3"])
    assert r.exit_code != 0 and "--shots 3 needs --labeled" in (r.output + str(r.exception))
    lab.assign(label=["sports", "politics", "cooking", "sports", "politics", "tech"]).to_csv(tmp_path / "b.csv", index=False)
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "y.csv"), "--labeled", str(tmp_path / "b.csv")])
    msg = r.output + str(r.exception)
    assert r.exit_code != 0 and "row 3" in msg and "'cooking'" in msg and "b.csv" in msg
