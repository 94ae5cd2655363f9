"""Sparse TF-IDF n-gram features: for SMILES, peptides, and languages no bundled encoder knows.

``fit(corpus)`` learns the vocabulary and the idf weights from the (unlabeled) corpus; ``transform`` returns a
``scipy.sparse`` CSR float32 matrix. Two blocks of features, each L2-normalised and scaled by
``1/sqrt(number of blocks)`` so a row has unit norm:

* word 1-2-grams (natural language only, by default);
* character n-grams: 2-5-grams inside word boundaries for natural language, plain 1-4-grams for sequences
  (SMILES, amino acids), where case matters and there are no words.

``"auto"`` settings are resolved at ``fit`` from the corpus (a text "looks like language" when it has at
least 3 whitespace-separated tokens; the median text decides) and recorded in :meth:`spec`.
The fitted state is saved as JSON (vocabulary, in index order) and safetensors (idf), never pickle, and
reloads to exactly the same features.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from silr.backbones.base import Backbone

__all__ = ["NgramBackbone"]

VOCAB_FILE = "ngram_vocabulary.json"
IDF_FILE = "ngram_idf.safetensors"
DEFAULT_MAX_FEATURES = 2**18


def _looks_like_language(texts: Sequence[str]) -> bool:
    sample = texts if len(texts) <= 5000 else [texts[i] for i in np.linspace(0, len(texts) - 1, 5000).astype(int)]
    counts = [len(t.split()) for t in sample]
    return bool(np.median(counts) >= 3) if counts else True


def _auto_min_df(n: int) -> int:
    if n < 50:
        return 1
    return max(2, int(round(n * 2e-4)))


class NgramBackbone(Backbone):
    """TF-IDF word and character n-grams, learned from the corpus.

    Parameters
    ----------
    word_ngrams : (int, int), None or "auto"
        Word n-gram range; ``None`` drops the word block; ``"auto"``: (1, 2) for natural language, none for
        sequences.
    char_ngrams : (int, int), None or "auto"
        Character n-gram range; ``"auto"``: (2, 5) within word boundaries for language, (1, 4) for sequences.
    lowercase : bool or "auto"
        ``"auto"``: lower-case natural language, keep the case of sequences (SMILES aromatic ``c`` vs ``C``).
    min_df : int or "auto"
        Smallest number of corpus texts an n-gram must occur in; ``"auto"``: 2, or 0.02% of the corpus when
        larger (1 for corpora under 50 texts).
    max_features : int
        Cap on the total number of features (split evenly between the blocks; most frequent kept).
    sublinear_tf : bool
        Use ``1 + log(tf)`` instead of raw counts.
    """

    name = "ngram"

    def __init__(
        self,
        *,
        word_ngrams: tuple[int, int] | None | str = "auto",
        char_ngrams: tuple[int, int] | None | str = "auto",
        lowercase: bool | str = "auto",
        min_df: int | str = "auto",
        max_features: int = DEFAULT_MAX_FEATURES,
        sublinear_tf: bool = True,
        cache_dir=None,
        progress: bool = True,
        use_cache: bool = True,
    ):
        # cache_dir / progress / use_cache are accepted so every backbone takes the same keywords
        self.word_ngrams = tuple(word_ngrams) if isinstance(word_ngrams, (list, tuple)) else word_ngrams
        self.char_ngrams = tuple(char_ngrams) if isinstance(char_ngrams, (list, tuple)) else char_ngrams
        self.lowercase = lowercase
        self.min_df = min_df
        self.max_features = int(max_features)
        self.sublinear_tf = bool(sublinear_tf)
        self.progress = progress
        self.blocks_: list[dict] | None = None  # [{"kind", "analyzer", "ngram_range", "vocabulary", "idf"}]

    # -- fitting --------------------------------------------------------------------------------
    def _resolved(self, texts: Sequence[str]) -> tuple[list[tuple[str, tuple[int, int]]], bool, int]:
        language = _looks_like_language(texts)
        word = self.word_ngrams
        if word == "auto":
            word = (1, 2) if language else None
        char = self.char_ngrams
        if char == "auto":
            char = (2, 5) if language else (1, 4)
        lower = language if self.lowercase == "auto" else bool(self.lowercase)
        min_df = _auto_min_df(len(texts)) if self.min_df == "auto" else int(self.min_df)
        blocks = []
        if word is not None:
            blocks.append(("word", tuple(int(v) for v in word)))
        if char is not None:
            blocks.append(("char_wb" if language else "char", tuple(int(v) for v in char)))
        if not blocks:
            raise ValueError("the ngram backbone needs word_ngrams or char_ngrams")
        return blocks, lower, min_df

    def _vectorizer(self, analyzer: str, ngram_range, vocabulary=None, min_df=1, max_features=None):
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(
            analyzer=analyzer,
            ngram_range=ngram_range,
            lowercase=self.lowercase_,
            min_df=min_df,
            max_features=max_features,
            vocabulary=vocabulary,
            dtype=np.float32,
            # keep one-character words (Romanian "a", "o", "e"); only read by the word analyzer
            token_pattern=r"(?u)\b\w+\b" if analyzer == "word" else None,
        )

    def fit(self, texts: Sequence[str]) -> "NgramBackbone":
        """Learn the vocabulary and idf weights from the corpus texts (no labels are read)."""
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("cannot fit the ngram backbone on an empty corpus")
        blocks, self.lowercase_, self.min_df_ = self._resolved(texts)
        n = len(texts)
        per_block = max(1, self.max_features // len(blocks))
        min_df = min(self.min_df_, n)
        self.blocks_ = []
        for analyzer, ngram_range in blocks:
            vec = self._vectorizer(analyzer, ngram_range, min_df=min_df, max_features=per_block)
            try:
                counts = vec.fit_transform(texts)
            except ValueError:  # no n-gram reaches min_df (tiny corpus): the block is empty
                continue
            vocab = vec.vocabulary_
            terms = [None] * len(vocab)
            for t, i in vocab.items():
                terms[i] = t
            counts = counts.tocsr()
            counts.sum_duplicates()
            df = np.bincount(counts.indices, minlength=len(terms)).astype(np.float64)  # texts per n-gram
            idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)  # smoothed idf, as scikit-learn
            self.blocks_.append(
                {"analyzer": analyzer, "ngram_range": list(ngram_range), "terms": terms, "idf": idf}
            )
        if not self.blocks_:
            raise ValueError(f"no n-gram occurs in at least {min_df} of the {n} corpus texts; lower min_df")
        self._build()
        return self

    def _build(self) -> None:
        self._vecs = [
            self._vectorizer(b["analyzer"], tuple(b["ngram_range"]), vocabulary={t: i for i, t in enumerate(b["terms"])})
            for b in self.blocks_
        ]

    @property
    def n_features(self) -> int:
        return sum(len(b["terms"]) for b in self.blocks_ or [])

    # -- features -------------------------------------------------------------------------------
    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Texts -> CSR float32 matrix of shape ``(len(texts), n_features)`` (rows of unit norm, or 0)."""
        if self.blocks_ is None:
            raise RuntimeError("the ngram backbone is not fitted: call fit(corpus_texts) first")
        texts = [str(t) for t in texts]
        scale = 1.0 / math.sqrt(len(self.blocks_))
        parts = []
        for b, vec in zip(self.blocks_, self._vecs):
            X = vec.transform(texts).tocsr().astype(np.float32)
            X.sort_indices()
            if self.sublinear_tf:
                np.log(X.data, out=X.data)
                X.data += 1.0
            X.data *= b["idf"][X.indices]
            norms = np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())
            norms[norms == 0] = 1.0
            X = sp.csr_matrix(sp.diags((scale / norms).astype(np.float32)) @ X, dtype=np.float32)
            parts.append(X)
        out = sp.hstack(parts, format="csr", dtype=np.float32)
        out.sort_indices()
        return out

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)

    # -- persistence (no pickle) ----------------------------------------------------------------
    def spec(self) -> dict:
        d = {
            "name": "ngram",
            "kind": "ngram",
            "word_ngrams": list(self.word_ngrams) if isinstance(self.word_ngrams, tuple) else self.word_ngrams,
            "char_ngrams": list(self.char_ngrams) if isinstance(self.char_ngrams, tuple) else self.char_ngrams,
            "lowercase": self.lowercase,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "sublinear_tf": self.sublinear_tf,
        }
        if self.blocks_ is not None:
            d["fitted"] = {
                "lowercase": self.lowercase_,
                "min_df": self.min_df_,
                "blocks": [
                    {"analyzer": b["analyzer"], "ngram_range": b["ngram_range"], "n_features": len(b["terms"])}
                    for b in self.blocks_
                ],
                "n_features": self.n_features,
                "files": [VOCAB_FILE, IDF_FILE],
            }
        return d

    def save(self, folder: Path) -> None:
        """Write the vocabulary (JSON) and idf weights (safetensors) into ``folder``."""
        if self.blocks_ is None:
            raise RuntimeError("the ngram backbone is not fitted: nothing to save")
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / VOCAB_FILE).write_text(
            json.dumps({"format": "silr-ngram/1", "blocks": [b["terms"] for b in self.blocks_]}, ensure_ascii=True)
        )
        from silr.io import atomic_path

        with atomic_path(folder / IDF_FILE) as tmp:  # also the mode: safetensors creates files 0600
            save_file({f"idf_{i}": np.ascontiguousarray(b["idf"]) for i, b in enumerate(self.blocks_)}, str(tmp))

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "NgramBackbone":
        from safetensors.numpy import load_file

        def _range(v):
            return tuple(v) if isinstance(v, list) else v

        self = cls(
            word_ngrams=_range(spec.get("word_ngrams", "auto")),
            char_ngrams=_range(spec.get("char_ngrams", "auto")),
            lowercase=spec.get("lowercase", "auto"),
            min_df=spec.get("min_df", "auto"),
            max_features=spec.get("max_features", DEFAULT_MAX_FEATURES),
            sublinear_tf=spec.get("sublinear_tf", True),
        )
        fitted = spec.get("fitted")
        if fitted is None:
            return self
        folder = Path(folder)
        for f in (VOCAB_FILE, IDF_FILE):
            if not (folder / f).exists():
                raise FileNotFoundError(f"the saved ngram backbone needs {folder / f}, which is missing")
        vocab = json.loads((folder / VOCAB_FILE).read_text())
        try:
            idf = load_file(str(folder / IDF_FILE))
        except Exception as e:  # safetensors raises its own error type on a damaged file
            raise ValueError(f"{folder / IDF_FILE} is not a readable safetensors file ({e}); the model folder is "
                             "damaged") from None
        self.lowercase_ = bool(fitted["lowercase"])
        self.min_df_ = int(fitted["min_df"])
        self.blocks_ = []
        for i, (meta, terms) in enumerate(zip(fitted["blocks"], vocab["blocks"])):
            w = idf[f"idf_{i}"].astype(np.float32)
            if len(terms) != meta["n_features"] or w.size != len(terms):
                raise ValueError(f"the saved ngram vocabulary in {folder} does not match its spec (block {i})")
            self.blocks_.append(
                {"analyzer": meta["analyzer"], "ngram_range": list(meta["ngram_range"]), "terms": terms, "idf": w}
            )
        self._build()
        return self
