"""Defects found by walking the README as a new user: what the command line prints, and bad input."""

import numpy as np
import pandas as pd
import pytest

from cliutil import silr_inproc  # noqa: E402


def _columns_of_printed_table(monkeypatch, summary):
    """The cells of `silr run`'s per-round table, by column header."""
    from rich.console import Console
    from rich.table import Table

    from silr.cli.run import _print_summary_table

    tables = []
    monkeypatch.setattr(Console, "print", lambda self, obj="", *a, **k: tables.append(obj)
                        if isinstance(obj, Table) else None)
    _print_summary_table(summary)
    (t,) = tables
    return {c.header: list(c._cells) for c in t.columns}


def test_run_table_puts_the_stack_accuracy_under_est_accuracy_not_under_the_gain(monkeypatch):
    """The hand-back row (stack/probe) shows its out-of-fold labeled accuracy in the "est. accuracy" column; the
    "est. gain vs round 0" column holds gains only (it showed 0.740, an accuracy, as a gain)."""
    base = {"pseudo_positive_rate": 0.5, "pi": 0.5, "theta_p": 0.8, "theta_n": 0.2, "accuracy": 0.8,
            "intervals": {k: [0.4, 0.9] for k in ("pi", "theta_p", "theta_n", "accuracy")}}
    rounds = [{**base, "round": 0}, {**base, "round": 1, "gain_over_round0": {"value": 0.02, "low": -0.05,
                                                                             "high": 0.09}}]
    summary = {"rounds": rounds, "final_round": 1, "final_source": "stack", "selection": "kept",
               "candidates": {"stack": {"labeled_accuracy": 0.74}},
               "evaluation": {"per_round": [{"round": 0, "accuracy": 0.7}, {"round": 1, "accuracy": 0.8}],
                              "final_accuracy": 0.82, "gain_over_round_0": 0.12}}
    cols = _columns_of_printed_table(monkeypatch, summary)
    assert cols["round"][-1] == "stack *"
    assert cols["est. accuracy"][-1] == "0.740 (out-of-fold)"
    assert cols["est. gain vs round 0"][-1] == "-"
    assert cols["gold accuracy"][-1] == "0.820"
    assert all(len(v) == 3 for v in cols.values())


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory, rt_task, silr_cache):
    """A small `silr refine` run (n-gram features) whose hand-back is the stack of the LLM's labels and the refined
    classifier."""
    import json

    d = tmp_path_factory.mktemp("review")
    df, _ = rt_task
    c = df.head(250).copy()
    c[["text", "pseudo_label"]].to_csv(d / "corpus.csv", index=False)
    c.sample(50, random_state=1)[["text", "label"]].to_csv(d / "labeled.csv", index=False)
    c[["text"]].head(20).to_csv(d / "new.csv", index=False)
    c[["text", "label"]].tail(60).to_csv(d / "test.csv", index=False)
    c[["label"]].to_csv(d / "gold.csv", index=False)
    out = d / "run"
    import sys

    from silr.cli import main

    old = sys.argv
    sys.argv = ["silr", "refine", str(d / "corpus.csv"), "--pseudo-col", "pseudo_label", "--labeled",
                str(d / "labeled.csv"), "--out", str(out), "--backbone", "ngram", "--rounds", "2", "-q",
                "--no-report"]
    try:
        main()
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        sys.argv = old
    assert json.loads((out / "rounds.json").read_text())["final_source"] == "stack"
    return d, out


def test_predict_says_when_the_stack_is_scored_without_the_llm_evidence(stack_run, capsys):
    """`silr predict` on a run that handed back the stack, given texts without the LLM's evidence, scores them with
    the refined classifier alone: it says so (and how to use the stack) instead of silently switching models; with
    --score-col it says nothing."""
    d, out = stack_run
    capsys.readouterr()
    code, _, err = silr_inproc(capsys, "predict", out, d / "new.csv", "--out", d / "pred.csv")
    assert code == 0, err
    assert "note:" in err and "refined classifier (round" in err and "--score-col" in err
    assert "'pseudo_label'" in err and "labeled rows" in err
    pd.read_csv(d / "new.csv").assign(pseudo_label=1).to_csv(d / "new_llm.csv", index=False)
    code, _, err = silr_inproc(capsys, "predict", out, d / "new_llm.csv", "--out", d / "pred2.csv",
                               "--score-col", "pseudo_label")
    assert code == 0, err
    assert "note:" not in err
    code, out_, err = silr_inproc(capsys, "evaluate", out, "--gold", d / "gold.csv", "--test", d / "test.csv")
    assert code == 0, err
    assert "test set: accuracy" in out_ and "note (test set):" in err and "--score-col COL (a column of the test" in err
    # the test rows' LLM evidence (here their pseudo-labels, the stack's input) makes the stack score them
    t = pd.read_csv(d / "test.csv")
    t.assign(pseudo_label=pd.read_csv(d / "corpus.csv")["pseudo_label"].tail(60).to_numpy()).to_csv(
        d / "test_llm.csv", index=False)
    code, out_, err = silr_inproc(capsys, "evaluate", out, "--gold", d / "gold.csv", "--test", d / "test_llm.csv",
                                  "--score-col", "pseudo_label")
    assert code == 0, err
    assert "test set: accuracy" in out_ and "note" not in err
    import json

    ev = json.loads((out / "rounds.json").read_text())["evaluation"]["test"]
    from silr.run_folder import predict_texts

    tl = pd.read_csv(d / "test_llm.csv")
    stack = predict_texts(out, tl["text"].tolist(), progress=False, llm_score=tl["pseudo_label"].to_numpy(float))
    assert ev["score_col"] == "pseudo_label"
    assert ev["accuracy"] == pytest.approx(float(np.mean(stack["label"].to_numpy() == tl["label"].to_numpy())))
    code, _, err = silr_inproc(capsys, "evaluate", out, "--gold", d / "gold.csv", "--score-col", "pseudo_label")
    assert code == 2 and "--test" in err


def test_stack_note_is_silent_when_the_backbone_gives_its_own_evidence(tmp_path):
    """The labeling LLM as the backbone scores new texts itself: no note; nor for a refined or probe hand-back."""
    import json

    from silr.cli.refine import stack_without_llm_note

    m = tmp_path / "model"
    m.mkdir()
    for source, bb, expect in (("stack", "llm", False), ("refined", "minilm", False), ("stack", "minilm", True)):
        (m / "config.json").write_text(json.dumps({"final_source": source, "predict_round": 2,
                                                   "stack": {"input": "llm_score", "refined": True}}))
        (m / "backbone.json").write_text(json.dumps({"name": bb}))
        assert (stack_without_llm_note(tmp_path, "--score-col COL") is not None) == expect


def test_a_typo_in_binary_gold_labels_is_an_error_by_row_not_a_k_class_run(tmp_path, capsys):
    """A labeled file with one stray value ('1.') beside 0/1, against 0/1 pseudo-labels, is a typo: one error naming
    the file, the column and the row; it turned the run into a 3-class refinement that failed on 'y_gold'."""
    from silr.corpora import load_embedded

    df = load_embedded("rotten_tomatoes").head(120).copy()
    df["pseudo_label"] = df["label"]
    df[["text", "pseudo_label"]].to_csv(tmp_path / "c.csv", index=False)
    lab = df[["text", "label"]].iloc[::3].head(30).astype({"label": str}).reset_index(drop=True)
    lab.loc[7, "label"] = "1."
    lab.to_csv(tmp_path / "l.csv", index=False)
    # with an abstention (empty pseudo-label) in the corpus too
    df.loc[5, "pseudo_label"] = None
    df[["text", "pseudo_label"]].to_csv(tmp_path / "c2.csv", index=False)
    for corpus in ("c.csv", "c2.csv"):
        code, _, err = silr_inproc(capsys, "refine", tmp_path / corpus, "--pseudo-col", "pseudo_label", "--labeled",
                                   tmp_path / "l.csv", "--out", tmp_path / "out")
        assert code == 1, err
        assert err.count("error:") == 1 and "K-class" not in err and "y_gold has" not in err
        if corpus == "c.csv":
            assert "l.csv'" in err and "'label'" in err and "row 9" in err and "'1.'" in err
        else:  # the binary path reports the corpus's empty pseudo-label first
            assert "c2.csv'" in err and "row 7" in err
        assert not (tmp_path / "out").exists()


def test_threshold_from_one_class_labeled_rows_is_an_error():
    """An 'accuracy' or 'prior' threshold fitted on labeled rows of one class falls below (or above) every text:
    an error that says so; it returned such a cut silently ('labeled accuracy 1.000')."""
    from silr.annotate.calibrate import choose_threshold

    corpus = np.linspace(-3, 3, 50)
    for method in ("accuracy", "prior", None):
        with pytest.raises(ValueError, match="both classes"):
            choose_threshold(method, corpus, [0.5, 1.0, 2.0, 0.8], [1, 1, 1, 1])
    # an abstained row of the other class leaves one class scored: the same
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold("accuracy", corpus, [0.5, 1.0, np.nan], [1, 1, 0])
    thr, _ = choose_threshold(0.25, corpus, [0.5, 1.0], [1, 1])  # a fixed number needs no classes
    assert thr == 0.25


def test_annotate_refuses_a_one_class_labeled_file_before_loading_a_model(tmp_path, capsys, monkeypatch):
    import silr.annotate.factory as factory

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(factory, "make_annotator", no_model)
    pd.DataFrame({"text": ["good", "bad", "fine"]}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"text": ["great", "lovely"], "label": ["yes", "yes"]}).to_csv(tmp_path / "l.csv", index=False)
    for extra in ([], ["--threshold", "prior"]):
        code, _, err = silr_inproc(capsys, "annotate", tmp_path / "c.csv", "--out", tmp_path / "a.csv", "--prompt",
                                   "sentiment", "--labeled", tmp_path / "l.csv", *extra)
        assert code == 1, err
        assert err.count("error:") == 1 and "l.csv'" in err and "'label'" in err and "both classes" in err
        assert "--threshold NUMBER" in err and not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("method", ["prior", "accuracy", "--threshold"])
def test_refine_reads_how_silr_annotate_set_the_threshold(tmp_path, capsys, method, silr_cache):
    """`silr refine --score-col llm_score` on `silr annotate`'s output judges the LLM's round-0 labels as given when
    annotate's record (CORPUS.annotation.json) says the threshold was 'prior' or a fixed number, as `silr run` does
    from the same record; with 'accuracy' (or no record) they are judged by a threshold refitted out of fold."""
    import json

    from silr.corpora import load_embedded

    df = load_embedded("rotten_tomatoes").sample(200, random_state=3).reset_index(drop=True)
    rng = np.random.default_rng(0)
    df["llm_score"] = (2 * df["label"] - 1) * 0.8 + rng.normal(0, 1.2, len(df))
    df["pseudo_label"] = (df["llm_score"] > 0).astype(int)
    df[["text", "llm_score", "pseudo_label"]].to_csv(tmp_path / "a.csv", index=False)
    df.sample(50, random_state=1)[["text", "label"]].to_csv(tmp_path / "l.csv", index=False)
    if method in ("prior", "accuracy"):
        rec = {"threshold": {"method": method, "value": 0.0}, "counts": {"rows": 200}}
        (tmp_path / "a.csv.annotation.json").write_text(json.dumps(rec))
    out = tmp_path / "run"
    pseudo = ["--pseudo-col", "llm_score", "--threshold", "0"] if method == "--threshold" else ["--pseudo-col",
                                                                                              "pseudo_label"]
    code, _, err = silr_inproc(capsys, "refine", tmp_path / "a.csv", *pseudo, "--labeled", tmp_path / "l.csv",
                               "--score-col", "llm_score", "--out", out, "--backbone", "ngram", "--rounds", "1",
                               "--no-report")
    assert code == 0, err
    llm_note = json.loads((out / "rounds.json").read_text())["candidates"]["llm"]["note"]
    if method in ("prior", "--threshold"):
        assert "judged as given" in err
        assert ("a.csv.annotation.json" if method == "prior" else "--threshold 0") in err
        assert "refitted out of fold" not in llm_note
    else:
        assert "judged as given" not in err and "refitted out of fold" in llm_note


def test_run_folder_model_files_get_the_ordinary_file_mode(stack_run):
    """The weights (safetensors creates its files 0600) get the mode of every other file of the run folder, so a run
    shared with a group can be loaded by it: they were the only owner-only files."""
    import os
    import stat

    _, out = stack_run
    umask = os.umask(0o022)
    os.umask(umask)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "weights.safetensors" for p in files) and any(p.suffix == ".safetensors" and
                                                                         p.name != "weights.safetensors" for p in files)
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_evaluate_names_a_bad_gold_or_test_file_once(stack_run, capsys):
    """The error reads "gold file 'x.csv' has no column ..." (it read "gold file file")."""
    d, out = stack_run
    pd.DataFrame({"y": [0, 1]}).to_csv(d / "bad.csv", index=False)
    for args, kind in ((["--gold", d / "bad.csv"], "gold"), (["--gold", d / "gold.csv", "--test", d / "bad.csv"], "test")):
        code, _, err = silr_inproc(capsys, "evaluate", out, *args)
        assert code == 1 and err.count("error:") == 1
        assert f"{kind} file '" in err and "file file" not in err


def test_refine_names_a_bad_risk_option_before_reading_files(tmp_path, capsys):
    """--risk / --later-risk outside robust_uu, uu, pn is a usage error naming the option (exit 2), before the corpus
    is read; it was scikit-learn's "The 'risk' parameter of SelfIterativeRefiner must be ..." after it."""
    for opt in ("--risk", "--later-risk"):
        code, _, err = silr_inproc(capsys, "refine", tmp_path / "missing.csv", "--pseudo-col", "p", "--labeled",
                                   tmp_path / "l.csv", "--out", tmp_path / "o", opt, "robust")
        assert code == 2, err
        assert opt in err and "robust_uu" in err and "SelfIterativeRefiner" not in err and "does not exist" not in err


def test_report_says_the_stack_is_the_final_labels_and_where_gold_came_from(stack_run, tmp_path):
    """report.html of a run handed back as a stack names it ('Final labels: stack') and does not badge round K as
    'selected' (its labels are not the final ones); the gold note names the gold file, not 'gold array passed to
    write_report'."""
    import json
    import shutil

    from silr.report import write_report

    d, out = stack_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    summary = json.loads((run / "rounds.json").read_text())
    summary["evaluation"] = {"gold": "gold.csv"}
    gold = pd.read_csv(d / "gold.csv")["label"].to_numpy(dtype=float)
    html = write_report(run, rounds=summary, gold=gold).read_text()
    assert "<dt>Final labels</dt><dd>stack</dd>" in html
    assert 'class="badge">selected' not in html
    assert "write_report" not in html and "Gold accuracy: against gold.csv." in html
    summary["final_source"] = "refined"
    html = write_report(run, rounds=summary, gold=gold).read_text()
    assert 'class="badge">selected' in html


@pytest.mark.parametrize("name, sep, expect", [
    ("semi.csv", ";", "looks semicolon-separated"),  # a spreadsheet's CSV in many locales; texts with commas
    ("semi_plain.csv", ";", "looks semicolon-separated"),  # ... and without (it read as one column 'text;label')
    ("tabs.csv", "\t", "give it the suffix .tsv"),
    ("commas.tsv", ",", "give it the suffix .csv"),
])
def test_a_file_written_with_another_separator_says_so(tmp_path, name, sep, expect):
    from silr.io import InputError, read_table

    texts = ["good, really good", "bad"] if name != "semi_plain.csv" else ["good", "bad"]
    (tmp_path / name).write_text(f"text{sep}label\n" + "".join(
        f'"{t}"{sep}{y}\n' for t, y in zip(texts, (1, 0))), encoding="utf-8")
    with pytest.raises(InputError, match=expect) as e:
        read_table(tmp_path / name, required=["text", "label"], what="labeled sample")
    assert f"labeled sample file '{tmp_path / name}'" in str(e.value)


def test_one_column_files_and_well_formed_files_still_read(tmp_path):
    from silr.io import read_table

    (tmp_path / "one.csv").write_text("text\nhello; world\nfine\n")
    assert read_table(tmp_path / "one.csv")["text"].tolist() == ["hello; world", "fine"]
    (tmp_path / "two.csv").write_text('text,label\n"a; b",1\n')
    assert read_table(tmp_path / "two.csv").shape == (1, 2)


def test_labeled_rows_outside_the_corpus_get_the_command_that_fixes_it(tmp_path, capsys):
    """Labeled rows that are not corpus rows have no pseudo-label; the error gives the command that adds one
    (annotate the labeled file itself: its scores are cached from the corpus's annotation)."""
    pd.DataFrame({"text": ["good", "bad", "fine", "awful"], "pseudo_label": [1, 0, 1, 0]}).to_csv(tmp_path / "c.csv",
                                                                                               index=False)
    pd.DataFrame({"text": ["great", "poor"], "label": [1, 0]}).to_csv(tmp_path / "l.csv", index=False)
    code, _, err = silr_inproc(capsys, "refine", tmp_path / "c.csv", "--pseudo-col", "pseudo_label", "--labeled",
                               tmp_path / "l.csv", "--out", tmp_path / "o")
    assert code == 1 and err.count("error:") == 1
    assert "not in the corpus" in err and "silr annotate LABELED --labeled LABELED --out FILE" in err


def test_silr_run_scores_its_test_file_with_the_llm_evidence(tmp_path, monkeypatch, rt_task):
    """`silr run` with [data] test: the test texts get the annotator's scores (same prompt), so a stack hand-back is
    scored with its LLM evidence, not as the refined classifier alone."""
    import json

    import silr.annotate.factory as factory
    from silr.annotate.types import ScoreResult
    from silr.job import config_from_dict, run_job

    class Keyword:  # a deterministic stand-in for the LLM: the score is the review's count of cue words
        model_id = "test:keywords"
        settings_id = ""

        def score(self, texts, prompt):
            for i, t in enumerate(texts):
                t = t.lower()
                yield i, ScoreResult(float(sum(w in t for w in ("good", "best", "fun", "great"))
                                           - sum(w in t for w in ("bad", "dull", "worst", "boring"))))

    monkeypatch.setattr(factory, "make_annotator", lambda model, **kw: Keyword())
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    df, _ = rt_task
    df.head(300).rename(columns={"label": "gold"})[["text", "gold"]].to_csv(tmp_path / "c.csv", index=False)
    df.iloc[300:360][["text", "label"]].to_csv(tmp_path / "test.csv", index=False)
    cfg = config_from_dict({"data": {"corpus": "c.csv", "gold_col": "gold", "test": "test.csv"},
                            "labeled": {"sample_from_gold": 50},
                            "annotator": {"model": "openai:m", "base_url": "http://x/v1", "instruction": "Good?",
                                          "label_words": "yes,no", "shots": 0},
                            "refine": {"backbone": "ngram", "rounds": 1}}, base_dir=tmp_path)
    summary = run_job(cfg, tmp_path / "out", echo=lambda m: None, progress=False)
    test = summary["evaluation"]["test"]
    assert test["score_col"] == "llm_score" and test["n"] == 60
    scored = pd.read_csv(tmp_path / "out" / "test_scored.csv")
    expect = [s.score for _, s in Keyword().score(scored["text"].tolist(), None)]
    assert np.allclose(scored["llm_score"].to_numpy(), expect)
    assert json.loads((tmp_path / "out" / "rounds.json").read_text())["evaluation"]["test"]["score_col"] == "llm_score"
