"""RewardModel: a silr run folder as a reward (TRL reward-function and best-of-n signatures), and `silr reward`."""

import sys

import numpy as np
import pandas as pd
import pytest


def _inproc(*args):
    """Run `silr refine` in this process through the real CLI entry point; returns the exit code."""
    from silr.cli import main

    old = sys.argv
    sys.argv = ["silr", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = old


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, silr_cache):
    """A small run folder made with `silr refine` on 240 real Rotten Tomatoes snippets with simulated
    pseudo-labels (75% accurate), 50 labeled rows, the fast n-gram backbone."""
    from silr.corpora import load_embedded

    d = tmp_path_factory.mktemp("reward-run")
    df = load_embedded("rotten_tomatoes", split="train").sample(240, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy()
    df["pseudo_label"] = np.where(rng.random(len(y)) < 0.25, 1 - y, y)
    df[["text", "pseudo_label"]].to_csv(d / "corpus.csv", index=False)
    df.sample(50, random_state=1)[["text", "label"]].to_csv(d / "labeled.csv", index=False)
    code = _inproc("refine", d / "corpus.csv", "--pseudo-col", "pseudo_label", "--labeled", d / "labeled.csv",
                   "--out", d / "run", "--backbone", "ngram", "--rounds", "2", "--no-report", "--quiet",
                   "--cache-dir", silr_cache)
    assert code == 0
    return d / "run"


def test_format_and_unwrap():
    from silr.reward import PKU_PAIR_TEMPLATE, format_pair, message_text, unwrap_prompt

    assert format_pair("Hi {x}?", "No.") == "# Prompt: Hi {x}?\n# Response: No.\n"
    assert PKU_PAIR_TEMPLATE.count("{") == 2
    assert unwrap_prompt("Question: How do I cook rice?\nAnswer:") == "How do I cook rice?"
    assert unwrap_prompt("plain prompt ") == "plain prompt"
    assert message_text([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "assistant") == "a"
    assert message_text([{"role": "user", "content": "u"}], "user") == "u"


def test_reward_matches_predict_and_signs(tiny_run):
    from silr.run_folder import predict_texts
    from silr.reward import RewardModel

    texts = ["a gorgeous, moving film", "dull and lifeless, a waste of time", "it is a movie"]
    rm = RewardModel.from_run(tiny_run, template="{response}", batch_size=2)
    ref = predict_texts(tiny_run, texts, progress=False)
    np.testing.assert_allclose(rm.score(texts), ref["score"].to_numpy(), rtol=1e-6, atol=1e-9)
    # TRL reward-function signature: prompts + completions (+ extra kwargs), plain or conversational
    r = rm(prompts=["Question: review?\nAnswer:"] * 3, completions=texts, completion_ids=None, trainer_state=None)
    assert isinstance(r, list) and all(isinstance(v, float) for v in r)
    np.testing.assert_allclose(r, ref["score"].to_numpy(), rtol=1e-6, atol=1e-9)
    conv = [[{"role": "assistant", "content": t}] for t in texts]
    np.testing.assert_allclose(rm(prompts=[[{"role": "user", "content": "q"}]] * 3, completions=conv), r)
    inv = RewardModel.from_run(tiny_run, template="{response}", invert=True)
    np.testing.assert_allclose(inv.score(texts), -rm.score(texts))
    pr = RewardModel.from_run(tiny_run, template="{response}", output="proba")
    p = pr.score(texts)
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p, ref["proba"].to_numpy(), rtol=1e-6)
    assert rm.__name__ == "silr_reward"
    with pytest.raises(ValueError):
        RewardModel.from_run(tiny_run, template="{prompt} only")


def test_reward_default_template_formats_pairs(tiny_run):
    from silr.reward import RewardModel

    rm = RewardModel.from_run(tiny_run)
    got = rm(prompts=["Question: Is it good?\nAnswer:"], completions=["Yes, wonderful."])
    want = rm.score(["# Prompt: Is it good?\n# Response: Yes, wonderful.\n"])
    assert got[0] == pytest.approx(float(want[0]))


def test_reward_cli(tiny_run, tmp_path):
    import typer
    from typer.testing import CliRunner

    from silr.cli.align import reward

    app = typer.Typer()
    app.command("reward")(reward)
    app.command("noop")(lambda: None)
    pd.DataFrame({"prompt": ["p1", "p2"], "response": ["great fun", "awful"]}).to_csv(tmp_path / "pairs.csv", index=False)
    res = CliRunner().invoke(app, ["reward", str(tiny_run), str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "o.csv"),
                                   "--batch-size", "1", "-q"])
    assert res.exit_code == 0, res.output
    o = pd.read_csv(tmp_path / "o.csv")
    assert list(o.columns) == ["prompt", "response", "reward"]
    res = CliRunner().invoke(app, ["reward", str(tiny_run), str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "t.csv"),
                                   "--text-col", "response", "--positive-is-bad", "-q"])
    assert res.exit_code == 0, res.output
    from silr.run_folder import predict_texts

    t = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_allclose(t["reward"], -predict_texts(tiny_run, ["great fun", "awful"], progress=False)["score"],
                               rtol=1e-6)
    res = CliRunner().invoke(app, ["reward", str(tmp_path), str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 1 and "not a silr run folder" in res.output
