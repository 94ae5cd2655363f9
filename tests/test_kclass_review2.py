"""Second review of the K-class path's abstained rows (issue 18): rows with no LLM label are left out of a run.

An integer-coded pseudo-label column with empty cells (abstained rows) is read as floats from JSONL/Parquet
(1.0, 2.0): its classes were '1.0' beside the labeled file's '1', a run of 2K classes; the error for an abstained
labeled text named its last corpus row; `silr annotate`'s note still said refine needs a label on every row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from silr.io import InputError
from silr.multiclass.files import evaluate_kclass, kclass_frames, refine_kclass

WORDS = {0: "apple banana fruit pear", 1: "car engine road wheel", 2: "rain cloud storm wind"}


def _coded(n=90, seed=0, abstained=(3, 10, 77)):
    """A corpus with integer class codes as the LLM's labels (70% right), NaN on the abstained rows (a float column
    once read, as JSONL/Parquet give it), and 24 labeled rows with integer gold."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    noisy = np.where(rng.random(n) < 0.7, y, (y + 1) % 3).astype(float)
    noisy[list(abstained)] = np.nan
    df = pd.DataFrame({"text": [f"{WORDS[k]} item {i}" for i, k in enumerate(y)], "llm_label": noisy})
    ldf = pd.DataFrame({"text": df["text"].iloc[20:44].to_numpy(), "label": y[20:44]})
    return df, ldf, y


def test_integer_codes_with_abstained_rows_keep_k_classes():
    """1.0 (a float read of the code 1, the column has empty cells) and the labeled file's 1 are one class."""
    df, ldf, y = _coded()
    assert df["llm_label"].dtype == np.float64
    texts, yy, gold, llm, classes, keep = kclass_frames(df, ldf, pseudo_col="llm_label", text_col="text",
                                                        label_col="label", score_prefix=None, corpus="c.jsonl",
                                                        labeled="l.jsonl")
    assert classes == ["0", "1", "2"]
    assert set(yy) == {"0", "1", "2"} and int((~keep).sum()) == 3


def test_integer_coded_jsonl_run_and_evaluation(tmp_path):
    """A K-class run on a JSONL corpus of integer codes with abstained rows has K = 3 classes, and `silr evaluate`
    with an integer gold file whose unknown rows are empty scores every row with gold (not n = 0)."""
    from silr.io import read_table

    df, ldf, y = _coded()
    df.to_json(tmp_path / "c.jsonl", orient="records", lines=True)
    ldf.to_json(tmp_path / "l.jsonl", orient="records", lines=True)
    c, lab = read_table(tmp_path / "c.jsonl"), read_table(tmp_path / "l.jsonl")
    s = refine_kclass(c, lab, tmp_path / "run", pseudo_col="llm_label", backbone="ngram", rounds=1, progress=False,
                      report=False)
    assert s["classes"] == ["0", "1", "2"] and s["rows_left_out"]["rows"] == [5, 12, 79]
    g = pd.DataFrame({"label": y.astype(float)})
    g.loc[[0, 1], "label"] = np.nan  # two rows without gold: left out of the figures, the others scored
    g.to_json(tmp_path / "gold.jsonl", orient="records", lines=True)
    ev = evaluate_kclass(tmp_path / "run", tmp_path / "gold.jsonl")
    assert ev["n"] == 85 and ev["final_accuracy"] > 0.5


def test_abstained_labeled_text_names_its_first_corpus_row():
    """A labeled text the LLM abstained on wherever it appears: the message names its first corpus row."""
    df, ldf, y = _coded()
    df.loc[[3, 10], "text"] = ldf["text"].iloc[5]  # the labeled row 7's text, abstained at rows 5, 12 and 27
    df.loc[25, "llm_label"] = np.nan
    with pytest.raises(InputError, match=r"row 7 is corpus row 5, which has no LLM label"):
        kclass_frames(df, ldf, pseudo_col="llm_label", text_col="text", label_col="label", score_prefix=None,
                      corpus="c", labeled="l")


def test_annotate_note_says_abstained_rows_are_left_out(tmp_path, monkeypatch):
    """`silr annotate`'s note on abstained rows said refine needs a label on every row; refine leaves them out."""
    import silr.cli.kclass as kc

    pd.DataFrame({"text": ["a", "b"]}).to_csv(tmp_path / "c.csv", index=False)

    def fake(df, text_col, spec, **kw):
        out = df.assign(llm_label=["x", None])
        return out, {"counts": {"truncated": 0, "abstained": 1, "rows": 2, "per_class": {"x": 1, "y": 0, "z": 0}}}

    monkeypatch.setattr("silr.multiclass.files.annotate_kclass", fake)
    from silr.multiclass.annotate import kprompt_from_words

    msgs = []
    monkeypatch.setattr(kc.typer, "echo", lambda m="", err=False: msgs.append(str(m)))
    kc.run_kclass_annotate(tmp_path / "c.csv", tmp_path / "o.csv", kprompt_from_words("x,y,z", "Which?"),
                           text_col="text", model="m", batch_size=1, max_text_tokens=8, center=False, cache_dir=None,
                           quiet=False)
    note = next(m for m in msgs if "named no label word" in m)
    assert "leave those rows out" in note and "needs a label on every row" not in note


def test_empty_gold_cell_in_a_csv_labeled_file_is_an_error(tmp_path):
    """A CSV's empty cell is read as '' (not NaN): the labeled row's gold became a class '' of its own."""
    from silr.io import read_table

    df, ldf, y = _coded()
    ldf["label"] = ldf["label"].astype(str)
    ldf.loc[4, "label"] = ""
    ldf.to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(InputError, match=r"labeled file 'l.csv': column 'label' is empty on row 6"):
        kclass_frames(df, read_table(tmp_path / "l.csv"), pseudo_col="llm_label", text_col="text",
                      label_col="label", score_prefix=None, corpus="c", labeled="l.csv")


def _run_job(tmp_path, corpus: str, labeled: str):
    """`silr run` on the corpus file ``corpus`` (pseudo-labels in llm_label, gold in gold) with the ``[labeled]``
    line ``labeled``, one ngram round; returns the CLI result."""
    from silr.cli import app

    (tmp_path / "job.toml").write_text(f'[data]\ncorpus = "{corpus}"\npseudo_col = "llm_label"\ngold_col = "gold"\n'
                                       f'[labeled]\n{labeled}\n[refine]\nrounds = 1\nbackbone = "ngram"\n')
    return CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])


def test_silr_run_gold_with_integer_codes_and_empty_cells(tmp_path):
    """`silr run` (K-class, pseudo-labels in the corpus) on a JSONL corpus whose gold column has integer codes and
    empty cells: gold.csv held '1.0' (the float read), which no class matched: the evaluation scored 0 rows."""
    df, ldf, y = _coded()
    df["gold"] = y.astype(float)
    df.loc[[0, 1], "gold"] = np.nan
    df.to_json(tmp_path / "c.jsonl", orient="records", lines=True)
    ldf.to_csv(tmp_path / "l.csv", index=False)
    r = _run_job(tmp_path, "c.jsonl", 'file = "l.csv"')
    assert r.exit_code == 0, (r.output, r.exception)
    ev = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert ev["n"] == 85 and ev["per_round"][0]["accuracy"] > 0.5  # 90 rows, 3 left out, 2 without gold


def test_silr_run_sample_from_gold_leaves_out_abstained_draws(tmp_path):
    """`[labeled] sample_from_gold` draws its rows before the LLM labels them: a drawn row the LLM abstained on
    failed the run ('drop it from the labeled file', a file there is not); it leaves the sample, with a note."""
    df, ldf, y = _coded(abstained=tuple(range(0, 90, 4)))  # 23 of 90 rows abstained: the 30 drawn rows hit some
    df["llm_label"] = df["llm_label"].map(lambda v: "" if v != v else f"c{int(v)}")
    df["gold"] = [f"c{k}" for k in y]
    df.to_csv(tmp_path / "c.csv", index=False)
    r = _run_job(tmp_path, "c.csv", "sample_from_gold = 30")
    assert r.exit_code == 0, (r.output, r.exception)
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    n_out = s["labeled_rows_left_out"]
    assert n_out > 0 and s["n_labeled"] == 30 - n_out
    assert f"{n_out} of the 30 rows drawn from gold for the labeled sample have no LLM label" in r.output
    assert json.loads((tmp_path / "run" / "evaluation.json").read_text())["n"] == 90 - 23
