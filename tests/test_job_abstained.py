"""`silr run` (binary) with `[labeled] sample_from_gold` and corpus rows without a pseudo-label (abstained): the
sample is drawn before the LLM's labels are read, so a drawn row without one failed the run with "annotate the
labeled rows too" (there is no labeled file); it now leaves the sample with a note, as the K-class job does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner


def binary_rows(n: int, seed: int) -> pd.DataFrame:
    """``n`` short texts of two classes (``gold`` alternating), with an 80%-right pseudo-label ``pseudo``."""
    rng = np.random.default_rng(seed)
    pos, neg = "great lovely superb fine".split(), "awful dull poor bad".split()
    rows = []
    for i in range(n):
        y = i % 2
        words = rng.choice(pos if y else neg, 3).tolist() + rng.choice(pos + neg, 1).tolist()
        rows.append({"text": f"row {i} " + " ".join(words), "gold": y, "pseudo": y if rng.random() < 0.8 else 1 - y})
    return pd.DataFrame(rows)


def test_binary_run_sample_from_gold_leaves_out_draws_without_a_pseudo_label(tmp_path, monkeypatch):
    from silr.cli import app

    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    df = binary_rows(160, 0).astype({"pseudo": object})
    df.loc[df.index % 5 == 0, "pseudo"] = ""
    df.to_csv(tmp_path / "c.csv", index=False)  # 32 of 160 rows without a pseudo-label
    (tmp_path / "job.toml").write_text('[data]\ncorpus = "c.csv"\npseudo_col = "pseudo"\ngold_col = "gold"\n'
                                       '[labeled]\nsample_from_gold = 50\n[refine]\nrounds = 1\nbackbone = "ngram"\n')
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, (r.output, r.exception)
    drawn = np.sort(np.random.default_rng(0).choice(160, 50, replace=False))  # the job's draw ([refine] seed 0)
    n_out = int(np.sum(drawn % 5 == 0))
    assert n_out > 0 and f"note: {n_out} rows drawn from gold for the labeled sample have no pseudo-label" in r.output
    s = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert s["n_labeled"] == 50 - n_out


def test_binary_run_sample_from_gold_leaves_out_draws_without_gold(tmp_path, monkeypatch):
    # a drawn row whose gold_col cell is empty has no gold to reveal: it leaves the sample with a note (as in the
    # K-class job); the run failed with "labeled sample ... rows 2, 4, ..." (rows of the draw, not of any file)
    from silr.cli import app

    monkeypatch.setenv("SILR_CACHE_DIR", str(tmp_path / "cache"))
    df = binary_rows(160, 1).astype({"gold": object})
    df.loc[df.index % 7 == 0, "gold"] = ""
    df.to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "job.toml").write_text('[data]\ncorpus = "c.csv"\npseudo_col = "pseudo"\ngold_col = "gold"\n'
                                       '[labeled]\nsample_from_gold = 50\n[refine]\nrounds = 1\nbackbone = "ngram"\n')
    r = CliRunner().invoke(app, ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, (r.output, r.exception)
    drawn = np.sort(np.random.default_rng(0).choice(160, 50, replace=False))
    n_out = int(np.sum(drawn % 7 == 0))
    assert n_out > 0 and f"note: {n_out} of the 50 rows drawn from gold for the labeled sample have no gold" in r.output
    assert json.loads((tmp_path / "run" / "rounds.json").read_text())["n_labeled"] == 50 - n_out
