"""`silr refine / predict / evaluate` end to end on a small real data set, and bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


from cliutil import silr_inproc  # noqa: E402


def silr(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "silr.cli", *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"silr {args} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def files(tmp_path_factory, rt_task, silr_cache):
    d = tmp_path_factory.mktemp("cli")
    df, lab = rt_task
    df[["text", "pseudo_label"]].to_csv(d / "corpus.csv", index=False)
    df[["text", "pseudo_label"]].to_json(d / "corpus.jsonl", orient="records", lines=True)
    df[["label"]].to_csv(d / "gold.csv", index=False)
    lab[["text", "label"]].to_parquet(d / "labeled.parquet")
    return d, df, lab


@pytest.fixture(scope="module")
def run(files):
    d, df, lab = files
    out = d / "run"
    p = silr("refine", d / "corpus.csv", "--pseudo-col", "pseudo_label", "--labeled", d / "labeled.parquet",
             "--out", out, "--rounds", 3, "--seed", 0)
    return out, p


def test_refine_writes_labels_rounds_and_model(files, run):
    d, df, lab = files
    out, p = run
    assert "round 1:" in p.stderr and "theta_p" in p.stderr
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == len(df)
    k = max(int(c.split("_")[1]) for c in labels.columns if c.startswith("round_"))
    assert list(labels.columns) == [f"round_{r}" for r in range(k + 1)] + ["final", "score"]
    assert np.array_equal(labels["round_0"], df["pseudo_label"])
    assert set(labels["final"].unique()) <= {0, 1}
    rounds = json.loads((out / "rounds.json").read_text())
    assert rounds["stop_reason"] and rounds["backbone"]["name"] == "minilm"
    for rec in rounds["rounds"]:
        for key in ("round", "pi", "theta_p", "theta_n", "pseudo_positive_rate", "intervals"):
            assert key in rec
        lo, hi = rec["intervals"]["theta_p"]
        assert lo <= rec["theta_p"] <= hi
    assert rounds["rounds"][1]["val_loss"] is not None
    assert (out / "model" / "weights.safetensors").exists() and (out / "report.html").exists()
    assert not any(p.name.endswith(".pkl") or p.name.endswith(".pt") for p in (out / "model").iterdir())
    # refinement helps on this real text task: the refined corpus labels beat the 70%-accurate pseudo-labels
    y = df["label"].to_numpy()
    assert (labels["final"] == y).mean() > (df["pseudo_label"] == y).mean() + 0.02


def test_predict_reloads_the_model(files, run, tmp_path):
    d, df, lab = files
    out, _ = run
    new = df[["text"]].head(40)
    new.to_csv(tmp_path / "new.csv", index=False)
    silr("predict", out, tmp_path / "new.csv", "--out", tmp_path / "pred.jsonl")
    pred = pd.read_json(tmp_path / "pred.jsonl", lines=True)
    assert list(pred.columns) == ["text", "score", "label", "proba"]
    labels = pd.read_csv(out / "labels.csv")
    # the saved classifier reproduces the run's scores on the same texts
    assert np.allclose(pred["score"], labels["score"].head(40), atol=1e-4)
    assert ((pred["proba"] > 0.5) == (pred["label"] == 1)).mean() > 0.8


def test_evaluate_adds_gold_figures(files, run):
    d, df, lab = files
    out, _ = run
    p = silr("evaluate", out, "--gold", d / "gold.csv")
    assert "final labels: accuracy" in p.stdout
    ev = json.loads((out / "rounds.json").read_text())["evaluation"]
    y = df["label"].to_numpy()
    assert ev["per_round"][0]["accuracy"] == pytest.approx((df["pseudo_label"] == y).mean())
    assert np.sum(ev["confusion"]) == len(df)


def test_jsonl_corpus_and_nonempty_out_dir(files, run):
    d, df, lab = files
    out, _ = run
    p = silr("refine", d / "corpus.jsonl", "--pseudo-col", "pseudo_label", "--labeled", d / "labeled.parquet",
             "--out", out, "--rounds", 1, check=False)
    assert p.returncode == 1 and "--overwrite" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_file", "does not exist"),
        ("missing_column", "pseudo_label"),
        ("nonbinary", "row"),
        ("empty_text", "row"),
        ("one_class_labeled", "one class"),
        ("no_overlap", "not in the corpus"),
        ("all_one_pseudo", "every pseudo-label"),
        ("header_only", "no rows"),
    ],
)
def test_bad_input_gives_one_clear_error_and_no_output(files, tmp_path, capsys, case, expect):
    d, df, lab = files
    corpus = tmp_path / "c.csv"
    labeled = tmp_path / "l.csv"
    c = df[["text", "pseudo_label"]].head(200).copy()
    lab2 = c.sample(30, random_state=0).assign(label=lambda x: np.r_[[1] * 15, [0] * 15])[["text", "label"]]
    if case == "missing_file":
        corpus = tmp_path / "nope.csv"
    elif case == "missing_column":
        c = c.rename(columns={"pseudo_label": "llm"})
    elif case == "nonbinary":
        c.loc[5, "pseudo_label"] = 7
    elif case == "empty_text":
        c.loc[3, "text"] = "   "
    elif case == "one_class_labeled":
        lab2["label"] = 1
    elif case == "no_overlap":
        lab2["text"] = lab2["text"] + " (edited)"
    elif case == "all_one_pseudo":
        c["pseudo_label"] = 1
    elif case == "header_only":
        c = c.head(0)
    if case != "missing_file":
        c.to_csv(corpus, index=False)
    lab2.to_csv(labeled, index=False)
    out = tmp_path / "out"
    code, _, err = silr_inproc(capsys, "refine", corpus, "--pseudo-col", "pseudo_label", "--labeled", labeled, "--out", out)
    assert code == 1, err
    assert expect in err and "Traceback" not in err
    assert err.count("error:") == 1
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))


def test_usage_errors_exit_2():
    p = silr("refine", check=False)
    assert p.returncode == 2
    p = silr("--help")
    for cmd in ("refine", "predict", "evaluate"):
        assert cmd in p.stdout
