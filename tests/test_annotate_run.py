"""annotate_frame + the SQLite score cache: dedup, resume after an interruption, corrupt cache, selection."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from silr.annotate.cache import ScoreCache, text_key
from silr.annotate.prompts import load_prompt, normalize_text
from silr.annotate.run import annotate_frame
from silr.annotate.types import ScoreResult
from silr.io import InputError


class Boom(RuntimeError):
    pass


class FakeScorer:
    """Deterministic pure-Python scorer; counts calls per text; can fail after ``fail_after`` texts."""

    model_id = "fake:v1"
    settings_id = "s=1"

    def __init__(self, fail_after: int | None = None, abstain_word: str | None = "???"):
        self.calls: Counter = Counter()
        self.fail_after = fail_after
        self.abstain_word = abstain_word
        self.prompts: list = []
        self.batches: list = []

    def score(self, texts, prompt):
        self.prompts.append(prompt)
        self.batches.append((prompt, list(texts)))
        for i, t in enumerate(texts):
            if self.fail_after is not None and sum(self.calls.values()) >= self.fail_after:
                raise Boom("scorer died")
            self.calls[t] += 1
            if self.abstain_word and self.abstain_word in t:
                yield i, ScoreResult.abstain()
                continue
            h = int(hashlib.sha256((prompt.hash + t).encode()).hexdigest()[:8], 16) / 2**32
            base = 2.0 if "good" in t else (-2.0 if "bad" in t else 0.0)
            yield i, ScoreResult(base + h - 0.5, False, len(t) > 40)


def _data(n=40):
    rng = np.random.default_rng(0)
    texts = [(f"{'good' if i % 2 else 'bad'} item {i} " + "x" * int(rng.integers(0, 60))).strip() for i in range(n)]
    texts[5] = texts[7]  # a duplicate in the input
    texts[9] = "what ??? is this"
    df = pd.DataFrame({"text": texts, "other": range(n)})
    lab = pd.DataFrame({"text": [f"good lab {i}" for i in range(5)] + [f"bad lab {i}" for i in range(5)] + [texts[3]],
                        "label": [1] * 5 + [0] * 5 + [1]})
    return df, lab


def test_dedup_and_columns():
    df, lab = _data()
    sc = FakeScorer()
    out, rec = annotate_frame(df, "text", sc, "generic", labeled=lab, shots=4, progress=False)
    assert max(sc.calls.values()) == 1  # identical texts scored once
    assert set(sc.calls) == set(df["text"]) | set(lab["text"])  # labeled texts scored too
    assert out.index.equals(df.index) and list(out.columns) == ["text", "other", "llm_score", "pseudo_label", "abstained"]
    assert out.loc[5, "llm_score"] == out.loc[7, "llm_score"]
    assert bool(out.loc[9, "abstained"]) and pd.isna(out.loc[9, "pseudo_label"]) and np.isnan(out.loc[9, "llm_score"])
    assert str(out["pseudo_label"].dtype) == "Int8"
    assert rec["counts"]["abstained"] == 1 and rec["counts"]["unique_texts"] == 39 + 11 - 1
    assert rec["counts"]["truncated"] == sum(len(t) > 40 for t in set(df["text"]) | set(lab["text"]))
    assert rec["threshold"]["method"] == "accuracy" and rec["threshold"]["labeled_accuracy"] == 1.0
    # good/bad separated by the calibrated threshold
    ok = ~out["abstained"]
    assert (out.loc[ok, "pseudo_label"].astype(int) == out.loc[ok, "text"].str.startswith("good")).all()
    assert len(rec["prompt"]["shots"]) == 4 and sorted(s["label"] for s in rec["prompt"]["shots"]) == [0, 0, 1, 1]


def test_shots_are_never_their_own_examples():
    df, lab = _data()
    sc = FakeScorer()
    _, rec = annotate_frame(df, "text", sc, "generic", labeled=lab, shots=4, progress=False)
    shot_texts = {lab.loc[s["row"], "text"] for s in rec["prompt"]["shots"]}
    assert len(shot_texts) == 4
    scored_with = {}
    for p, texts in sc.batches:
        own = {normalize_text(s.text) for s in p.shots}
        for t in texts:
            assert normalize_text(t) not in own, f"{t!r} was its own few-shot example"
            scored_with[t] = p
    for t in shot_texts:  # scored with an alternative prompt of the same class balance
        assert scored_with[t].hash != rec["prompt"]["hash"]
        assert sorted(x.label for x in scored_with[t].shots) == [0, 0, 1, 1]
    assert len(sc.prompts) == 1 + len(shot_texts)  # one alternative prompt per shot text


def test_resume_after_interruption_scores_every_text_once(tmp_path):
    df, lab = _data()
    cache = tmp_path / "c" / "annotations.sqlite"
    dying = FakeScorer(fail_after=17)
    with pytest.raises(Boom):
        annotate_frame(df, "text", dying, "generic", labeled=lab, shots=4, cache=cache, progress=False)
    with sqlite3.connect(cache) as con:
        assert con.execute("select count(*) from scores").fetchone()[0] == 17  # committed as produced
    again = FakeScorer()
    out, rec = annotate_frame(df, "text", again, "generic", labeled=lab, shots=4, cache=cache, progress=False)
    total = dying.calls + again.calls
    assert set(total.values()) == {1}  # every text scored exactly once over both runs
    assert rec["counts"]["cached"] == 17 and rec["counts"]["scored"] == rec["counts"]["unique_texts"] - 17
    ref, ref_rec = annotate_frame(df, "text", FakeScorer(), "generic", labeled=lab, shots=4, progress=False)
    pd.testing.assert_frame_equal(out, ref)
    assert rec["threshold"] == ref_rec["threshold"]
    # a re-run costs nothing
    third = FakeScorer()
    out3, rec3 = annotate_frame(df, "text", third, "generic", labeled=lab, shots=4, cache=cache, progress=False)
    assert not third.calls and rec3["counts"]["scored"] == 0
    pd.testing.assert_frame_equal(out3, ref)
    # another prompt is another cache entry
    fourth = FakeScorer()
    annotate_frame(df.iloc[:3], "text", fourth, "sentiment", labeled=lab, shots=4, cache=cache, progress=False)
    assert fourth.calls


def test_corrupt_cache_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "annotations.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING):
        c = ScoreCache(path)
    assert c.moved_aside is not None and c.moved_aside.exists()
    assert str(path) in caplog.text and "safe to delete" in caplog.text
    c.put("m", "p", text_key("a"), ScoreResult(1.5))
    assert c.get_many("m", "p", [text_key("a"), text_key("b")]) == {text_key("a"): ScoreResult(1.5, False, False)}
    c.close()
    # it persists
    with ScoreCache(path) as c2:
        assert c2.count() == 1


def test_selection_limit_sample_and_errors():
    df, lab = _data()
    out, rec = annotate_frame(df, "text", FakeScorer(), "generic", limit=5, progress=False, threshold=0.0)
    assert list(out.index) == [0, 1, 2, 3, 4] and rec["counts"]["rows"] == 5
    out2, _ = annotate_frame(df, "text", FakeScorer(), "generic", sample=7, seed=3, progress=False, threshold=0.0)
    out3, _ = annotate_frame(df, "text", FakeScorer(), "generic", sample=7, seed=3, progress=False, threshold=0.0)
    assert len(out2) == 7 and list(out2.index) == list(out3.index) and out2.index.is_monotonic_increasing
    with pytest.raises(InputError, match="no text column"):
        annotate_frame(df, "txt", FakeScorer(), "generic", progress=False)
    bad = df.copy()
    bad.loc[2, "text"] = "  "
    with pytest.raises(InputError, match="row 4"):
        annotate_frame(bad, "text", FakeScorer(), "generic", progress=False)
    with pytest.raises(InputError, match="label"):
        annotate_frame(df, "text", FakeScorer(), "generic", labeled=lab.assign(label="maybe"), progress=False)


def test_prior_threshold_and_zero_shot_warning(caplog):
    df, lab = _data()
    with caplog.at_level(logging.WARNING):
        out, rec = annotate_frame(df, "text", FakeScorer(), load_prompt("generic"), labeled=None, shots=4,
                                  progress=False)
    assert "zero-shot" in caplog.text and rec["threshold"]["method"] == "fixed"
    assert rec["prompt"]["shots"] == []
    out, rec = annotate_frame(df, "text", FakeScorer(), "generic", labeled=lab, threshold="prior", progress=False)
    assert rec["threshold"]["method"] == "prior"
    assert rec["threshold"]["corpus_positive_rate"] == pytest.approx(6 / 11, abs=0.03)
