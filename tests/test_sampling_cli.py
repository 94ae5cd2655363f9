"""`silr sample` -> label -> `silr refine --labeled` end to end on small real data (Rotten Tomatoes snippets shipped
with silr, a simulated LLM score), and the errors for a bad sample file."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest


from cliutil import silr_inproc  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, silr_cache):
    from silr.corpora import load_embedded

    d = tmp_path_factory.mktemp("sample")
    df = load_embedded("rotten_tomatoes").sample(600, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy()
    df["llm_score"] = rng.normal(size=len(y)) + 1.2 * (2 * y - 1) + 0.4
    df["pseudo"] = (df["llm_score"] > 0).astype(int)
    df[["text", "pseudo", "llm_score"]].to_csv(d / "corpus.csv", index=False)
    return d, df


def _fill(d, df, name="filled.csv", src="sample.csv"):
    s = pd.read_csv(d / src, keep_default_na=False)
    s["label"] = df["label"].to_numpy()[s["row"]]
    s.to_csv(d / name, index=False)
    shutil.copy(d / f"{src}.design.json", d / f"{name}.design.json")
    return s


@pytest.fixture(scope="module")
def sampled(corpus):
    from silr.cli import main  # noqa: F401  (registers the commands)
    from typer.testing import CliRunner

    from silr.cli import app

    d, df = corpus
    r = CliRunner().invoke(app, ["sample", str(d / "corpus.csv"), "--pseudo-col", "pseudo", "--score-col", "llm_score",
                                 "--n", "50", "--out", str(d / "sample.csv"), "--seed", "0"])
    assert r.exit_code == 0, r.output
    return d, df


def test_sample_writes_rows_to_label_and_the_design(sampled):
    d, df = sampled
    s = pd.read_csv(d / "sample.csv", keep_default_na=False)
    assert list(s.columns) == ["row", "text", "label"] and len(s) == 50
    assert (s["label"] == "").all() and s["row"].is_unique
    assert (s["text"].to_numpy() == df["text"].to_numpy()[s["row"]]).all()
    rec = json.loads((d / "sample.csv.design.json").read_text())
    assert sorted(rec["rows"]) == sorted(s["row"].tolist())
    # inverse inclusion probabilities of the drawn rows add up to the corpus size (an unbiased count)
    assert sum(1 / p for p in rec["inclusion"]) == pytest.approx(len(df))
    assert min(rec["design"]["alloc"]) >= 2


@pytest.fixture(scope="module")
def refined(sampled):
    from typer.testing import CliRunner

    from silr.cli import app

    d, df = sampled
    s = _fill(d, df)
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "pseudo", "--score-col", "llm_score",
                                 "--labeled", str(d / "filled.csv"), "--out", str(d / "run"), "--backbone", "ngram",
                                 "--rounds", "1", "--no-report"])
    assert r.exit_code == 0, r.output
    return d, df, s, r.output


def test_refine_reads_the_design_back_and_weights_by_it(refined):
    from silr.sampling import prediction_covariates, round_estimates
    from silr.sampling.files import read_labeled_design

    d, df, s, err = refined
    assert "weighted by the design" in err and "gain vs round 0" in err
    rounds = json.loads((d / "run" / "rounds.json").read_text())
    r1 = rounds["rounds"][1]
    g = r1["gain_over_round0"]
    assert g["low"] <= g["value"] <= g["high"] and g["method"].startswith("design-weighted")
    # round 0's pi is the design-weighted estimate over the corpus pseudo-label sides
    drawn = read_labeled_design(s, d / "filled.csv", df["text"].tolist(), df["pseudo"].to_numpy(), text_col="text",
                                label_col="label", corpus=d / "corpus.csv")
    order = np.argsort(drawn.rows)
    rows, y = drawn.rows[order], drawn.y[order]
    s0 = df["pseudo"].to_numpy()
    e = round_estimates(y, rows, s0, drawn.design, prediction_covariates(df["llm_score"].to_numpy(), None,
                                                                         df["pseudo"].to_numpy()))
    assert rounds["rounds"][0]["pi"] == pytest.approx(e["pi"].value)


@pytest.mark.parametrize("case,expect", [
    ("unfilled", "have no label yet (lines 2, 3"),
    ("foreign_row", "were not drawn by the design"),
    ("edited_text", "is not the corpus text of its row"),
    ("other_corpus", "does not match corpus file"),
    ("bad_row", "column 'row' must hold corpus row numbers"),
])
def test_bad_sample_files_name_the_file_and_rows(sampled, capsys, tmp_path, case, expect):
    d, df = sampled
    s = _fill(d, df, name="bad.csv")
    corpus_file = d / "corpus.csv"
    if case == "unfilled":
        s["label"] = s["label"].astype(object)
        s.loc[:3, "label"] = ""
    elif case == "foreign_row":
        free = sorted(set(range(len(df))) - set(s["row"]))[0]
        s.loc[0, "row"], s.loc[0, "text"] = free, df["text"][free]
    elif case == "edited_text":
        s.loc[2, "text"] = "something else entirely"
    elif case == "other_corpus":
        other = df.copy()
        other.loc[0, "pseudo"] = 1 - other.loc[0, "pseudo"]
        corpus_file = tmp_path / "other.csv"
        other[["text", "pseudo", "llm_score"]].to_csv(corpus_file, index=False)
    elif case == "bad_row":
        s["row"] = s["row"].astype(object)
        s.loc[1, "row"] = "x"
    s.to_csv(d / "bad.csv", index=False)
    code, out, err = silr_inproc(capsys, "refine", corpus_file, "--pseudo-col", "pseudo", "--score-col", "llm_score",
                                 "--labeled", d / "bad.csv", "--out", tmp_path / "run", "--backbone", "ngram", "--no-report")
    assert code == 1
    assert expect in err and "bad.csv" in err
    assert not (tmp_path / "run" / "rounds.json").exists()


def test_sample_refuses_to_overwrite_labels(sampled, capsys):
    d, _ = sampled
    code, out, err = silr_inproc(capsys, "sample", d / "corpus.csv", "--pseudo-col", "pseudo", "--n", "50", "--out",
                                 d / "sample.csv")
    assert code == 1 and "--overwrite" in err


def test_more_adds_rows_where_the_run_changed_labels(refined, capsys):
    from silr.sampling.files import read_labeled_design

    d, df, s, _ = refined
    code, out, err = silr_inproc(capsys, "sample", d / "corpus.csv", "--pseudo-col", "pseudo", "--score-col",
                                 "llm_score", "--more", "10", "--run", d / "run", "--labeled", d / "filled.csv",
                                 "--out", d / "more.csv", "--seed", "1")
    assert code == 0, err
    m = pd.read_csv(d / "more.csv", keep_default_na=False)
    assert len(m) == 60 and (m["label"] == "").sum() == 10
    old = m[m["label"] != ""]
    assert dict(zip(old["row"], old["label"].astype(int))) == dict(zip(s["row"], s["label"].astype(int)))
    run = pd.read_csv(d / "run" / "labels.csv")
    changed = (run["final"] != run["round_0"]).to_numpy()
    new_rows = m.loc[m["label"] == "", "row"].to_numpy()
    assert changed[new_rows].mean() > changed.mean() + 0.3  # the new rows come from where the run changed labels
    m["label"] = df["label"].to_numpy()[m["row"]]
    drawn = read_labeled_design(m, d / "more.csv", df["text"].tolist(), df["pseudo"].to_numpy(), text_col="text",
                                label_col="label", corpus=d / "corpus.csv")
    assert drawn.rows.size == 60 and (drawn.design.alloc >= 2).all()
    # the 10 new rows are recorded as labeled after the run (a rerun judges round 0 on them as given)
    assert np.array_equal(drawn.design.after_run, np.sort(new_rows))


def test_config_run_reads_the_design_like_refine(refined, tmp_path):
    """`silr run` with `[labeled] file` drawn by `silr sample`: the same design-weighted priors as `silr refine`
    on the same corpus and pseudo-labels (it used to treat the file as a uniform sample)."""
    from typer.testing import CliRunner

    from silr.cli import app
    from silr.job import load_config, run_job

    d, df, s, _ = refined
    r = CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "pseudo", "--labeled",
                                 str(d / "filled.csv"), "--out", str(tmp_path / "ref"), "--backbone", "ngram",
                                 "--rounds", "1", "--no-report"])
    assert r.exit_code == 0, r.output
    (tmp_path / "run.toml").write_text(
        f'[data]\ncorpus = "{d / "corpus.csv"}"\npseudo_col = "pseudo"\n'
        f'[labeled]\nfile = "{d / "filled.csv"}"\n[refine]\nbackbone = "ngram"\nrounds = 1\n')
    said = []
    run_job(load_config(tmp_path / "run.toml"), tmp_path / "job", echo=said.append, progress=False)
    assert any("weighted by the design" in m for m in said)
    ref = json.loads((tmp_path / "ref" / "rounds.json").read_text())["rounds"][0]
    job = json.loads((tmp_path / "job" / "rounds.json").read_text())["rounds"][0]
    for k in ("pi", "theta_p", "theta_n"):
        assert job[k] == pytest.approx(ref[k]), k
    # and a uniform-sample estimate of the same 50 rows would differ: the design is what made them equal
    from silr.priors import estimate_priors

    uni = estimate_priors(df["label"].to_numpy()[s["row"]], df["pseudo"].to_numpy()[s["row"]], df["pseudo"].mean(),
                          n_bootstrap=10)
    assert abs(uni.pi - job["pi"]) > 1e-6
