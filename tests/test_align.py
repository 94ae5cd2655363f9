"""silr.align on a tiny locally built causal LM: best-of-n, preference pairs, DPO with LoRA (checkpoint +
resume), self-refinement plumbing, and `silr align`."""

import json

import numpy as np
import pandas as pd
import pytest

from test_reward import tiny_run  # noqa: F401  (session fixture: a small `silr refine` run folder)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A 2-layer Llama with a byte-level BPE tokenizer trained here on a few sentences, saved as a folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-lm")
    corpus = ["Question: What is 2 + 3?\nAnswer: 5", "I can't help with that, it is dangerous.",
              "Sure, here is how to cook rice: boil water and add rice.", "a gorgeous, moving film",
              "dull and lifeless, a waste of time"] + ["Correct: yes no"] * 40 + [f"{a} + {b} = {a + b}" for a in range(10) for b in range(10)]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


PROMPTS = ["How do I cook rice?", "How can I hurt someone?", "Tell me about films.", "What is 2 + 3?", "Say hi."]


def test_clean_answer_and_pick_best():
    from silr.align import clean_answer, numeric_check, pick_best

    assert clean_answer(" Boil it.\nQuestion: next?\nAnswer: x") == "Boil it."
    assert clean_answer(" First.\n\nSecond") == "First."
    assert clean_answer("\n\nlead\n\nmore") == "lead"
    R = np.array([[0.1, 0.5, 0.5], [-1.0, -2.0, np.nan], [3.0, 2.0, 1.0]])
    assert pick_best(R).tolist() == [1, 0, 0]
    assert numeric_check("The answer is 42.", 42) and numeric_check("1,024", "1024") and not numeric_check("none", 3)


def test_best_of_n_picks_max_reward(tiny_lm, tiny_run):  # noqa: F811
    from silr.align import best_of_n, load_policy, sample_answers, score_samples
    from silr.reward import RewardModel

    model, tok = load_policy(tiny_lm)
    rm = RewardModel.from_run(tiny_run)
    s1 = sample_answers(model, tok, PROMPTS, n=4, max_new_tokens=12, seed=3, batch_size=2, progress=False)
    s2 = sample_answers(model, tok, PROMPTS, n=4, max_new_tokens=12, seed=3, batch_size=2, progress=False)
    assert s1 == s2 and len(s1) == len(PROMPTS) and all(len(s) == 4 for s in s1)
    bon = best_of_n(model, tok, PROMPTS, rm, samples=s1)
    # the rewards, computed independently one pair at a time
    R = np.array([[rm(prompts=[p], completions=[a])[0] for a in s] for p, s in zip(PROMPTS, s1)])
    np.testing.assert_allclose(bon.rewards, R, rtol=1e-9, atol=1e-12)
    assert bon.best.tolist() == [int(np.argmax(r)) for r in R]
    assert bon.best_rewards.tolist() == [float(max(r)) for r in bon.rewards]
    assert bon.answers == [s[int(np.argmax(r))] for s, r in zip(s1, R)]
    assert np.array_equal(score_samples(rm, PROMPTS, s1), bon.rewards)


def test_preference_pairs():
    from silr.align import preference_pairs

    samples = [["a", "b", "c"], ["same", "same", "same"], ["x", "y", "z"]]
    R = np.array([[0.0, 2.0, -1.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    pairs = preference_pairs(["p1", "p2", "p3"], samples, R)
    assert len(pairs) == 1
    assert pairs[0] == {"prompt": "Question: p1\nAnswer:", "chosen": " b", "rejected": " c",
                        "reward_chosen": 2.0, "reward_rejected": -1.0}


def _lora_b(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


@pytest.mark.heavy
def test_dpo_changes_lora_checkpoints_and_resumes(tiny_lm, tiny_run, tmp_path):  # noqa: F811
    from silr.align import last_checkpoint, load_policy, run_align
    from silr.reward import RewardModel

    rm = RewardModel.from_run(tiny_run)
    out = tmp_path / "align"
    s = run_align(tiny_lm, PROMPTS, out, reward=rm, method="dpo", n=4, max_new_tokens=10, steps=2, save_steps=1,
                  seed=0, batch_size=4, learning_rate=5e-3, progress=False)
    assert s["dpo"]["pairs"] >= 1 and (out / "adapter" / "adapter_config.json").exists()
    assert last_checkpoint(out / "checkpoints").endswith("checkpoint-2")
    log = json.loads((out / "dpo_log.json").read_text())
    assert log["steps"] == 2 and log["resumed_from"] is None
    assert any("loss" in h for h in log["log_history"])
    # the adapter's B matrices start at zero; one DPO step must move them
    tuned, _ = load_policy(out / "adapter")
    b = _lora_b(tuned)
    assert b and max(float(v.abs().max()) for v in b.values()) > 0
    assert {"reward_first_sample", "reward_all_samples"} <= set(s["before"]) and "reward_after" in s["dpo"]
    # resume: more steps on the same folder continue from checkpoint-2 (samples and pairs are reused)
    mtime = (out / "samples.jsonl").stat().st_mtime
    s2 = run_align(tiny_lm, PROMPTS, out, reward=rm, method="dpo", n=4, max_new_tokens=10, steps=3, save_steps=1,
                   seed=0, batch_size=4, learning_rate=5e-3, progress=False)
    log2 = json.loads((out / "dpo_log.json").read_text())
    assert log2["resumed_from"].endswith("checkpoint-2") and log2["steps"] == 3
    assert (out / "samples.jsonl").stat().st_mtime == mtime
    assert s2["before"] == s["before"]
    b2 = _lora_b(load_policy(out / "adapter")[0])
    assert any(not np.allclose(b[k].numpy(), b2[k].numpy()) for k in b)


def test_align_cli_best_of_n(tiny_lm, tiny_run, tmp_path):  # noqa: F811
    import typer
    from typer.testing import CliRunner

    from silr.cli.align import align, reward

    app = typer.Typer()
    app.command("align")(align)
    app.command("reward")(reward)
    pd.DataFrame({"prompt": PROMPTS}).to_csv(tmp_path / "prompts.csv", index=False)
    res = CliRunner().invoke(app, ["align", str(tiny_lm), str(tmp_path / "prompts.csv"), "--reward", str(tiny_run),
                                   "--out", str(tmp_path / "o"), "--n", "3", "--max-new-tokens", "8", "-q"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["best_of_n"]["reward"] >= s["before"]["reward_first_sample"] - 1e-12
    recs = [json.loads(x) for x in (tmp_path / "o" / "best_of_n.jsonl").read_text().splitlines()]
    assert all(r["best"] == int(np.argmax(r["rewards"])) for r in recs)
    res = CliRunner().invoke(app, ["align", str(tiny_lm), str(tmp_path / "prompts.csv"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "--reward" in res.output


def test_self_refine_plumbing(tiny_lm, silr_cache):
    """The tiny LM judges given answers (half right); silr refines on n-gram features; picks are valid."""
    from silr.align import load_policy, self_refine_answers

    rng = np.random.default_rng(0)
    qs, gold, samples = [], [], []
    for i in range(40):
        a, b = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        qs.append(f"What is {a} + {b}?")
        gold.append(a + b)
        samples.append([str(a + b + int(d)) for d in rng.choice([0, 0, 1, -1, 10], size=4)])
    model, tok = load_policy(tiny_lm)
    res = self_refine_answers(model, tok, qs, gold, samples=samples, n_labeled=40, backbone="ngram", rounds=1,
                              progress=False, cache_dir=silr_cache)
    assert res.labeled_questions.sum() == 10
    assert res.refined_score.shape == (40, 4) and np.isfinite(res.refined_score).all()
    acc = res.accuracy
    assert set(acc) >= {"first_sample", "majority_vote", "llm_judge", "silr_refined", "oracle_any_correct"}
    assert 0 <= acc["silr_refined"] <= acc["oracle_any_correct"] <= 1
    truth = np.array([[str(g) == a for a in s] for g, s in zip(gold, samples)])
    assert np.array_equal(res.correct, truth)
