"""The run folder's place: `silr refine --out .` (the working directory) works for two classes too, and
`--overwrite` replaces an earlier run's folder only, never a folder of other files (with `--out .` it would have
deleted the corpus beside it)."""

from __future__ import annotations

from pathlib import Path

from test_job_abstained import binary_rows
from typer.testing import CliRunner


def _inputs(d: Path):
    df = binary_rows(200, 0).rename(columns={"gold": "label"})
    df[["text", "pseudo"]].to_csv(d / "corpus.csv", index=False)
    df.iloc[::3][["text", "label"]].to_csv(d / "labeled.csv", index=False)


def _refine(d: Path, out: str, *extra):
    from silr.cli import app

    return CliRunner().invoke(app, ["refine", str(d / "corpus.csv"), "--pseudo-col", "pseudo", "--labeled",
                                    str(d / "labeled.csv"), "--out", out, "--rounds", "1", "--backbone", "ngram",
                                    "--no-report", "-q", *extra])


def test_binary_out_dot_and_overwrite_only_replaces_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    _inputs(tmp_path)
    (tmp_path / "w").mkdir()
    monkeypatch.chdir(tmp_path / "w")
    r = _refine(tmp_path, ".")
    assert r.exit_code == 0, (r.output, r.exception)
    assert {"labels.csv", "rounds.json", "model"} <= {p.name for p in (tmp_path / "w").iterdir()}
    (tmp_path / "w" / "stale.txt").write_text("x")  # an earlier run's leftover goes with --overwrite
    r = _refine(tmp_path, ".", "--overwrite")
    assert r.exit_code == 0, (r.output, r.exception)
    assert "stale.txt" not in {p.name for p in (tmp_path / "w").iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left beside it
    # a folder that is not a run folder (the inputs live there) is refused, and nothing in it is touched
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _refine(tmp_path, ".", "--overwrite")
    assert r.exit_code != 0 and "not a silr run folder" in (r.output + str(r.exception))
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "corpus.csv").exists()


def test_predict_keeps_an_input_column_of_the_same_name(tmp_path, monkeypatch):
    # the review helper's finding: `silr predict` on a test file with its gold `label` overwrote it with the
    # prediction; the input's column is now kept as input_label, with a note
    from silr.cli import app

    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    _inputs(tmp_path)
    assert _refine(tmp_path, str(tmp_path / "run")).exit_code == 0
    r = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path / "labeled.csv"), "--out",
                                 str(tmp_path / "p.csv")])
    assert r.exit_code == 0, (r.output, r.exception)
    import pandas as pd

    got, given = pd.read_csv(tmp_path / "p.csv"), pd.read_csv(tmp_path / "labeled.csv")
    assert (got["input_label"] == given["label"]).all() and {"score", "label", "proba"} <= set(got.columns)
    assert "kept as 'input_label'" in r.output
