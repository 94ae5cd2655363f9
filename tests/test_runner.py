"""`silr run CONFIG` and `silr demo`."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from silr.io import InputError
from silr.job import config_from_dict, load_config, run_job


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    with pytest.raises(InputError, match="unknown key 'roundz' in \\[refine\\]"):
        config_from_dict({"refine": {"roundz": 3}})
    with pytest.raises(InputError, match="unknown section \\[model\\]"):
        config_from_dict({"model": {}})
    with pytest.raises(InputError, match="key 'rounds' must be int"):
        config_from_dict({"refine": {"rounds": "five"}})
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  corpus: x.csv\nlabeled:\n  sample_from_gold: true\n")
    with pytest.raises(InputError, match="sample_from_gold"):
        load_config(p)
    p = tmp_path / "c.toml"
    p.write_text("[data]\ncorpus = \n")
    with pytest.raises(InputError, match="does not parse"):
        load_config(p)


def test_config_run_with_given_pseudo_labels_evaluates_on_gold(tmp_path, rt_task, silr_cache):
    df, lab = rt_task
    df = df.head(1200)
    df[["text", "pseudo_label", "label"]].rename(columns={"label": "gold"}).to_csv(tmp_path / "corpus.csv", index=False)
    (tmp_path / "run.toml").write_text(
        '[data]\ncorpus = "corpus.csv"\npseudo_col = "pseudo_label"\ngold_col = "gold"\n'
        "[labeled]\nsample_from_gold = 50\n[refine]\nrounds = 2\n"
    )
    summary = run_job(load_config(tmp_path / "run.toml"), tmp_path / "out", echo=lambda m: None, progress=False)
    out = tmp_path / "out"
    for f in ("labels.csv", "rounds.json", "report.html", "gold.csv", "model/config.json"):
        assert (out / f).exists(), f
    ev = json.loads((out / "rounds.json").read_text())["evaluation"]
    y = df["label"].to_numpy()
    assert ev["per_round"][0]["accuracy"] == pytest.approx((df["pseudo_label"] == y).mean())
    assert summary["config"]["refine"]["rounds"] == 2
    # a second run into the same folder needs --overwrite
    with pytest.raises(InputError, match="overwrite"):
        run_job(load_config(tmp_path / "run.toml"), out, echo=lambda m: None, progress=False)


@pytest.mark.heavy
def test_demo_reduced_size_end_to_end(tmp_path):
    """The README's main job at reduced size: real Gemma-3-270M labels and hidden-state features, 2 rounds;
    the saved model then scores new texts (Gemma reloaded from the model folder's spec)."""
    p = subprocess.run(
        [sys.executable, "-m", "silr.cli", "demo", "--n", "300", "--rounds", "2", "--out", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=1500,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "gold accuracy" in p.stdout and "LLM labels (round 0)" in p.stdout
    rounds = json.loads((tmp_path / "demo" / "rounds.json").read_text())
    ev = rounds["evaluation"]
    # the real LLM is far better than chance on this task, and silr never hands back worse than it by much
    assert ev["per_round"][0]["accuracy"] > 0.65
    assert ev["final_accuracy"] >= ev["per_round"][0]["accuracy"] - 0.03
    assert rounds["annotation"]["model"]
    assert rounds["backbone"]["kind"] == "prompted-lm" and rounds["backbone"]["dim"] == 640
    new = tmp_path / "new.csv"
    import pandas as pd

    pd.DataFrame({"text": ["A gorgeous, moving film.", "Tedious and badly acted."]}).to_csv(new, index=False)
    p = subprocess.run([sys.executable, "-m", "silr.cli", "predict", str(tmp_path / "demo"), str(new), "--out",
                        str(tmp_path / "pred.csv")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred["label"]) == [1, 0]
