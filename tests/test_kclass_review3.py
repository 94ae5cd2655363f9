"""Third review of the K-class path (issue 18), as a user of `silr refine | evaluate | predict | run` on files.

Found: an empty, header-only or missing labeled file (or one without --label-col) was reported as the corpus's
labels not being binary; a labeled file whose integer codes a spreadsheet wrote as '1.0' made 2K classes; a labeled
file that names the classes otherwise than the LLM's labels (codes vs names), or a misspelt class, ran silently
with a class no LLM label names (the refinement never started); LLM labels naming two of three classes failed with
the estimator's 'y_gold ... neither a class of y', also with the per-class scores that let round 0 name the third."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

WORDS = {0: "apple banana fruit pear", 1: "car engine road wheel", 2: "rain cloud storm wind"}
NAMES = np.array(["fruit", "road", "storm"])


def _files(tmp_path, n=90, seed=0, codes=False):
    """corpus.csv (text, llm_label 75% right, llm_logp_<class>) and labeled.csv (24 corpus rows, gold); returns
    the folder and the gold classes of the corpus rows."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    noisy = np.where(rng.random(n) < 0.75, y, (y + 1) % 3)
    names = np.array(["0", "1", "2"]) if codes else NAMES
    df = pd.DataFrame({"text": [f"{WORDS[k]} item {i}" for i, k in enumerate(y)], "llm_label": names[noisy]})
    lp = np.log(np.eye(3)[noisy] * 0.7 + 0.1)
    for j, c in enumerate(names):
        df[f"llm_logp_{c}"] = lp[:, j]
    df.to_csv(tmp_path / "corpus.csv", index=False)
    pd.DataFrame({"text": df["text"].iloc[20:44], "label": names[y[20:44]]}).to_csv(tmp_path / "labeled.csv",
                                                                                   index=False)
    return tmp_path, y


def _refine(d, labeled, out, *extra):
    from silr.cli import app

    return CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                                    str(labeled), "--out", str(out), "--backbone", "ngram", "--rounds", "1", "-q",
                                    *extra])


@pytest.mark.parametrize("case", ["empty", "header", "missing", "no_label_col"])
def test_a_bad_labeled_file_is_named_not_the_corpus(tmp_path, case):
    """K-class LLM labels and a labeled file that cannot be read: the error named the corpus's labels as not
    binary (the dispatch fell back to the binary path, which reads the corpus first)."""
    d, _ = _files(tmp_path)
    lab = d / "bad.csv"
    if case == "empty":
        lab.write_text("")
    elif case == "header":
        lab.write_text("text,label\n")
    elif case == "no_label_col":
        pd.read_csv(d / "labeled.csv").rename(columns={"label": "gold"}).to_csv(lab, index=False)
    r = _refine(d, lab, d / "o")
    assert r.exit_code != 0
    msg = str(r.exception) + r.output
    assert "labeled file 'bad.csv'" in msg or str(lab) in msg, msg
    assert "not a binary label" not in msg
    assert not (d / "o" / "rounds.json").exists()


def test_labeled_codes_written_as_floats_are_the_llms_codes(tmp_path):
    """A labeled file whose integer codes were written as '1.0' (pandas writes an integer column with empty cells
    so) beside LLM labels '1': classes '0', '0.0', '1', '1.0', ... (6), and the refinement never started."""
    d, y = _files(tmp_path, codes=True)
    lab = pd.read_csv(d / "labeled.csv")
    lab["label"] = lab["label"].astype(float)
    lab.to_csv(d / "lab_float.csv", index=False)
    assert "1.0" in (d / "lab_float.csv").read_text()
    r = _refine(d, d / "lab_float.csv", d / "o")
    assert r.exit_code == 0, (r.output, r.exception)
    s = json.loads((d / "o" / "rounds.json").read_text())
    assert s["classes"] == ["0", "1", "2"] and s["stop"] != "not_started"


def test_evaluate_and_predict_read_codes_written_as_floats(tmp_path):
    """`silr evaluate --test` compared '1.0' with the predicted '1' (test accuracy 0) and `silr predict
    --score-col` refused a label column of '1.0' as no class of the model."""
    d, y = _files(tmp_path, codes=True)
    r = _refine(d, d / "labeled.csv", d / "o")
    assert r.exit_code == 0, (r.output, r.exception)
    test = pd.DataFrame({"text": pd.read_csv(d / "corpus.csv")["text"].iloc[:30], "label": y[:30].astype(float),
                         "llm": y[:30].astype(float)})
    test.to_csv(d / "test.csv", index=False)
    from silr.multiclass.files import evaluate_kclass

    pd.DataFrame({"label": y.astype(float)}).to_csv(d / "gold.csv", index=False)
    ev = evaluate_kclass(d / "o", d / "gold.csv", test=d / "test.csv")
    assert ev["per_round"][0]["accuracy"] > 0.6 and ev["test"]["accuracy"] > 0.6  # '1.0' was no class: 0
    from silr.cli import app

    r = CliRunner().invoke(app, ["predict", str(d / "o"), str(d / "test.csv"), "--out", str(d / "p.csv"),
                                 "--score-col", "llm", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)


def test_classes_spelt_otherwise_than_the_llms_are_an_error(tmp_path):
    """LLM labels as codes 0/1/2, the labeled file's as names: a run of 6 classes, half of them named by no LLM
    label, handed back the probe of the labeled rows with no word said."""
    d, y = _files(tmp_path, codes=True)
    pd.DataFrame({"text": pd.read_csv(d / "corpus.csv")["text"].iloc[20:44], "label": NAMES[y[20:44]]}).to_csv(
        d / "lab_names.csv", index=False)
    r = _refine(d, d / "lab_names.csv", d / "o")
    assert r.exit_code != 0
    assert ("labeled file" in str(r.exception) and "are none of the LLM's labels in column 'llm_label'"
            in str(r.exception)), str(r.exception)
    assert not (d / "o" / "rounds.json").exists()


def test_a_misspelt_labeled_class_is_named_in_a_note(tmp_path):
    """One labeled row 'Road' beside the LLM's 'road': a fourth class no LLM label names, so the refinement does
    not start; the run now says which class and which labeled rows."""
    d, _ = _files(tmp_path)
    lab = pd.read_csv(d / "labeled.csv")
    i = int(np.flatnonzero(lab["label"] == "road")[0])
    lab.loc[i, "label"] = "Road"
    lab.to_csv(d / "lab_typo.csv", index=False)
    r = _refine(d, d / "lab_typo.csv", d / "o")
    assert r.exit_code == 0, (r.output, r.exception)
    assert f"'Road' (labeled file rows {i + 2})" in r.output and "A misspelling?" in r.output
    s = json.loads((d / "o" / "rounds.json").read_text())
    assert s["labeled_only_classes"] == {"Road": [i + 2]}


def test_llm_labels_naming_two_of_three_classes(tmp_path):
    """The LLM's argmax never says 'storm'; the labeled file does. Without scores: an error naming the file, row
    and remedy (was the estimator's 'y_gold has values ... neither a class of y'); with the per-class scores the
    run is a K-class run (round 0, the scores calibrated on the labeled rows, may name the third class)."""
    d, _ = _files(tmp_path)
    c = pd.read_csv(d / "corpus.csv")
    c.loc[c["llm_label"] == "storm", "llm_label"] = "road"
    c.to_csv(d / "corpus.csv", index=False)
    r = _refine(d, d / "labeled.csv", d / "o")
    assert r.exit_code != 0
    assert "class 'storm' (row" in str(r.exception) and "name only 2 classes" in str(r.exception)
    assert "neither a class of y" not in str(r.exception)
    r = _refine(d, d / "labeled.csv", d / "o2", "--score-col", "llm_logp_")
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads((d / "o2" / "rounds.json").read_text())["classes"] == ["fruit", "road", "storm"]


def test_estimator_takes_k_per_class_scores_when_the_labels_name_two_classes():
    """fit(X, y with two values, y_gold with a third, llm_score (n, 3)) went to the binary path and failed."""
    from silr.refine import SelfIterativeRefiner

    rng = np.random.default_rng(1)
    n = 300
    y = np.arange(n) % 3
    X = np.eye(3)[y] * 3 + rng.normal(size=(n, 3))
    s = np.where(y == 2, 1, y)  # the LLM's labels never say 2
    lp = np.log(np.eye(3)[y] * 0.6 + 0.2)  # its scores do
    gold = np.full(n, -1)
    gold[:45] = y[:45]
    m = SelfIterativeRefiner(rounds=1, n_bootstrap=100).fit(X, s, y_gold=gold, llm_score=lp)
    assert m.classes_.tolist() == [0, 1, 2] and m.predict_proba(X[:4], llm_score=lp[:4]).shape == (4, 3)
    with pytest.raises(ValueError, match="neither a class of y"):  # binary y, binary scores: a typo stays an error
        SelfIterativeRefiner(rounds=1).fit(X, s, y_gold=gold, llm_score=lp[:, 0])


def test_overwrite_replaces_an_earlier_run_whole(tmp_path):
    """`silr refine --overwrite` on a K-class run folder wrote the new files into it: the earlier run's
    evaluation.json (and report.html under --no-report) stayed beside them, scoring another run."""
    from silr.cli import app

    d, y = _files(tmp_path)
    pd.DataFrame({"label": NAMES[y]}).to_csv(d / "gold.csv", index=False)
    assert _refine(d, d / "labeled.csv", d / "o").exit_code == 0
    r = CliRunner().invoke(app, ["evaluate", str(d / "o"), "--gold", str(d / "gold.csv")])
    assert r.exit_code == 0 and (d / "o" / "evaluation.json").exists() and (d / "o" / "report.html").exists()
    r = _refine(d, d / "labeled.csv", d / "o", "--overwrite", "--no-report")
    assert r.exit_code == 0, (r.output, r.exception)
    assert sorted(p.name for p in (d / "o").iterdir()) == ["labels.csv", "model", "report.md", "rounds.json"]
    assert not [p for p in d.iterdir() if p.name.startswith(".o.")]  # no partial folder left beside it


def test_a_failed_write_leaves_the_earlier_folder_and_keeps_the_jobs_files(tmp_path, monkeypatch):
    """The run folder is built beside ``out`` and moved in complete: a failure while writing it leaves the earlier
    folder as it was; the job's own files written before (keep_files: its annotation) move into the new one."""
    import silr.multiclass.files as kf
    from silr.io import read_table

    d, _ = _files(tmp_path)
    c, lab = read_table(d / "corpus.csv"), read_table(d / "labeled.csv")
    out = d / "run"
    out.mkdir()
    (out / "annotated.csv").write_text("text\nx\n")
    (out / "evaluation.json").write_text("{}")  # an earlier run's
    kw = dict(pseudo_col="llm_label", backbone="ngram", rounds=1, progress=False, report=False)

    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(kf, "save_model", boom)
        with pytest.raises(OSError, match="disk full"):
            kf.refine_kclass(c, lab, out, keep_files=("annotated.csv",), **kw)
    assert sorted(p.name for p in out.iterdir()) == ["annotated.csv", "evaluation.json"]
    assert [p.name for p in d.iterdir() if p.name.startswith(".run")] == []
    kf.refine_kclass(c, lab, out, keep_files=("annotated.csv",), **kw)
    names = sorted(p.name for p in out.iterdir())
    assert "annotated.csv" in names and "rounds.json" in names and "evaluation.json" not in names


def test_silr_run_sample_from_gold_leaves_out_draws_without_gold(tmp_path):
    """`[labeled] sample_from_gold` on a corpus whose gold column is empty on some rows: the run failed with
    "labeled file '30 corpus rows': column 'label' is empty on row 2" (no such file; a row of the draw). A drawn row
    with no gold leaves the sample, with a note, as a drawn row the LLM abstained on does."""
    from silr.cli import app

    d, y = _files(tmp_path)
    c = pd.read_csv(d / "corpus.csv")
    c["gold"] = NAMES[y]
    c.loc[::3, "gold"] = None
    c.to_csv(d / "corpus.csv", index=False)
    (d / "job.toml").write_text('[data]\ncorpus = "corpus.csv"\npseudo_col = "llm_label"\ngold_col = "gold"\n'
                                '[labeled]\nsample_from_gold = 30\n[refine]\nrounds = 1\nbackbone = "ngram"\n')
    r = CliRunner().invoke(app, ["run", str(d / "job.toml"), "--out", str(d / "run")])
    assert r.exit_code == 0, (r.output, r.exception)
    s = json.loads((d / "run" / "rounds.json").read_text())
    n_out = s["labeled_rows_without_gold"]
    assert n_out > 0 and s["n_labeled"] == 30 - n_out
    assert f"{n_out} of the 30 rows drawn from gold for the labeled sample have no gold label" in r.output
    assert json.loads((d / "run" / "evaluation.json").read_text())["n"] == 90 - 30  # the rows with gold


def test_evaluate_refuses_gold_texts_in_another_order(tmp_path):
    """A gold file with a text column, sorted otherwise than the corpus: `silr evaluate` paired its labels with
    the run's rows by position and reported wrong accuracies without a word."""
    from silr.cli import app

    d, y = _files(tmp_path)
    assert _refine(d, d / "labeled.csv", d / "o").exit_code == 0
    g = pd.DataFrame({"text": pd.read_csv(d / "corpus.csv")["text"], "label": NAMES[y]})
    g.to_csv(d / "gold.csv", index=False)
    r = CliRunner().invoke(app, ["evaluate", str(d / "o"), "--gold", str(d / "gold.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    g.iloc[::-1].to_csv(d / "gold_rev.csv", index=False)
    r = CliRunner().invoke(app, ["evaluate", str(d / "o"), "--gold", str(d / "gold_rev.csv")])
    assert r.exit_code != 0 and "gold file" in str(r.exception) and "row 2 has the text" in str(r.exception)


def test_evaluate_counts_gold_classes_the_run_does_not_have(tmp_path):
    """Gold rows of a class the run does not have were dropped as if they had no gold: 'accuracy 0.92 on 184 rows'
    where the run got those 60 rows wrong too."""
    from silr.multiclass.files import evaluate_kclass

    d, y = _files(tmp_path)
    assert _refine(d, d / "labeled.csv", d / "o").exit_code == 0
    gold = NAMES[y].astype(object)
    pd.DataFrame({"label": gold}).to_csv(d / "gold.csv", index=False)
    full = evaluate_kclass(d / "o", d / "gold.csv")
    gold[:30] = "sky"
    pd.DataFrame({"label": gold}).to_csv(d / "gold_sky.csv", index=False)
    ev = evaluate_kclass(d / "o", d / "gold_sky.csv")
    assert ev["n"] == 90 and ev["gold_classes_not_in_run"] == {"sky": 30}
    right = np.sum(pd.read_csv(d / "o" / "labels.csv")["label"].to_numpy()[30:] == NAMES[y][30:])
    assert ev["final_accuracy"] == pytest.approx(right / 90) and ev["final_accuracy"] < full["final_accuracy"]
    assert np.sum(ev["confusion_final"]) == 60


def test_estimator_refuses_gold_classes_that_are_none_of_the_llms():
    """fit(X, y as names, y_gold as integer codes) made a refiner of 2K classes (the codes read as the strings
    '0', '1', '2' beside 'a', 'b', 'c'), half of them named by no LLM label, without a word."""
    from silr.refine import SelfIterativeRefiner

    rng = np.random.default_rng(2)
    y = np.arange(240) % 3
    X = np.eye(3)[y] * 3 + rng.normal(size=(240, 3))
    gold = np.full(240, -1)
    gold[:40] = y[:40]
    with pytest.raises(ValueError, match=r"y_gold's classes \(0, 1, 2\) are none of y's \(a, b, c\)"):
        SelfIterativeRefiner(rounds=1, n_bootstrap=50).fit(X, np.array(["a", "b", "c"])[y], y_gold=gold)


def test_silr_sample_names_k_classes(tmp_path):
    """`silr sample` on K-class LLM labels said they are not binary labels and to pass --threshold."""
    from silr.cli import app

    d, _ = _files(tmp_path)
    r = CliRunner().invoke(app, ["sample", str(d / "corpus.csv"), "--pseudo-col", "llm_label", "--out",
                                 str(d / "s.csv")])
    assert r.exit_code != 0 and "holds 3 classes (fruit, road, storm)" in str(r.exception), str(r.exception)
    assert "uniform random sample" in str(r.exception) and not (d / "s.csv").exists()


def test_out_dot_is_replaced_in_place(tmp_path, monkeypatch):
    """`--out .` (the working directory): the run folder's files are moved into it (renaming '.' fails)."""
    d, _ = _files(tmp_path)
    (d / "w").mkdir()
    monkeypatch.chdir(d / "w")
    assert _refine(d, d / "labeled.csv", Path(".")).exit_code == 0
    (d / "w" / "evaluation.json").write_text("{}")
    r = _refine(d, d / "labeled.csv", Path("."), "--overwrite", "--no-report")
    assert r.exit_code == 0, (r.output, r.exception)
    assert sorted(p.name for p in (d / "w").iterdir()) == ["labels.csv", "model", "report.md", "rounds.json"]
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("bad", ["text", "gold"])
def test_silr_run_checks_the_labeled_file_before_annotating(tmp_path, monkeypatch, bad):
    """`silr run` with 3+ label words and a labeled file with a text not in the corpus (or an empty gold cell)
    annotated the whole corpus first (69 s for 244 texts with Gemma-3-270M) and failed after, leaving the
    annotation in --out; the labeled file is checked before."""
    from silr.cli import app

    d, _ = _files(tmp_path)
    lab = pd.read_csv(d / "labeled.csv")
    if bad == "text":
        lab.loc[2, "text"] = "a text the corpus does not have"
    else:
        lab["label"] = lab["label"].astype(object)
        lab.loc[2, "label"] = None
    lab.to_csv(d / "lab.csv", index=False)

    def no_annotation(*a, **k):
        raise AssertionError("annotated before the labeled file was checked")

    monkeypatch.setattr("silr.multiclass.files.annotate_kclass", no_annotation)
    (d / "job.toml").write_text('[data]\ncorpus = "corpus.csv"\n[labeled]\nfile = "lab.csv"\n[annotator]\n'
                                'label_words = "fruit,road,storm"\ninstruction = "Which?"\nshots = 0\n'
                                '[refine]\nbackbone = "ngram"\nrounds = 1\n')
    r = CliRunner().invoke(app, ["run", str(d / "job.toml"), "--out", str(d / "run")])
    assert r.exit_code != 0 and "labeled file 'lab.csv'" in str(r.exception) and "row 4" in str(r.exception), \
        str(r.exception)
    assert not (d / "run").exists() or not any((d / "run").iterdir())


@pytest.mark.parametrize("param", [{"selection": "last"}, {"relabel": "stack"}, {"aggregate": "last"},
                                   {"supervised_weight": 0.5}])
def test_binary_only_estimator_options_are_refused_with_k_classes(param):
    """SelfIterativeRefiner(selection="last") (or relabel, aggregate, supervised_weight) with K > 2 classes ran the
    K-class loop's own choices and ignored the option without a word."""
    from silr.refine import SelfIterativeRefiner

    rng = np.random.default_rng(3)
    y = np.arange(150) % 3
    X = np.eye(3)[y] * 3 + rng.normal(size=(150, 3))
    gold = np.where(np.arange(150) < 30, y, -1)
    name = next(iter(param))
    with pytest.raises(ValueError, match=f"{name}=.* is for two classes"):
        SelfIterativeRefiner(rounds=1, n_bootstrap=50, **param).fit(X, y, y_gold=gold)


def test_scores_given_as_the_pseudo_label_column_are_named(tmp_path):
    """--pseudo-col naming a per-class score column (and a K-class labeled file): every distinct score became a
    class (a K = 90 run), then an error listing all of them; now one line says what the column holds."""
    d, _ = _files(tmp_path)
    r = _refine(d, d / "labeled.csv", d / "o", "--pseudo-col", "llm_logp_road")
    assert r.exit_code != 0 and "column 'llm_logp_road' holds real-valued scores" in str(r.exception), \
        str(r.exception)
    assert len(str(r.exception)) < 400
