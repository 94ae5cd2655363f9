"""Controlled pseudo-label noise for the benchmark: exact accuracy, class-conditional or instance-dependent.

Both generators flip an exact number of rows, ``round((1 - accuracy) * n)``, so the noisy labels have the
requested accuracy up to one row.

* :func:`class_conditional_noise`: a share ``concentration`` (default 0.8) of the flips falls on one class
  (the "heavy" class: positives, or negatives when positives are under 25% of the rows), capped so that at most
  ``max_class_rate`` of a class is flipped; the remaining flips fall on the other class. Inside a class the
  flipped rows are uniform at random (the LLM's errors depend on the class only, as in PAPER.md section 7).
* :func:`instance_dependent_noise`: each row's hardness is ``1 - p(gold | text)`` from a logistic regression on
  bag-of-character-n-grams, cross-fitted (each half of the rows is scored by a model trained on the other
  half's gold labels), so a row's own label never makes it look easy. Rows are flipped without replacement with
  probability proportional to ``hardness ** sharpness`` (weighted sampling by exponential keys): the errors
  concentrate on texts a weak model finds ambiguous, like an LLM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseSpec", "class_conditional_noise", "instance_dependent_noise", "text_hardness", "make_noise",
           "NOISE_SETTINGS"]


@dataclass(frozen=True)
class NoiseSpec:
    kind: str  # "cc" (class-conditional) or "id" (instance-dependent)
    accuracy: float

    @property
    def name(self) -> str:
        return f"{self.kind}{int(round(self.accuracy * 100))}"

    @classmethod
    def parse(cls, s: str) -> "NoiseSpec":
        s = s.strip()
        kind, acc = s[:2], s[2:]
        if kind not in ("cc", "id") or not acc.isdigit():
            raise ValueError(f"noise setting {s!r}: expected cc<percent> or id<percent>, e.g. cc70, id60")
        return cls(kind, int(acc) / 100)


NOISE_SETTINGS = ("cc70", "cc60", "id70", "id60")


def _n_flips(n: int, accuracy: float) -> int:
    if not 0.0 < accuracy <= 1.0:
        raise ValueError(f"accuracy must be in (0, 1], got {accuracy}")
    return int(round((1.0 - accuracy) * n))


def heavy_class(y: np.ndarray) -> int:
    """The class that takes most flips: positives, unless they are under 25% of the rows."""
    return 1 if np.mean(y) >= 0.25 else 0


def class_conditional_noise(
    y, accuracy: float, *, seed: int = 0, concentration: float = 0.8, max_class_rate: float = 0.6,
    heavy: int | None = None,
) -> np.ndarray:
    """Noisy copy of ``y`` (0/1) with exactly ``round((1-accuracy) n)`` flips, concentrated on one class."""
    y = np.asarray(y).astype(np.int64)
    n = y.size
    k = _n_flips(n, accuracy)
    h = heavy_class(y) if heavy is None else int(heavy)
    idx_h = np.flatnonzero(y == h)
    idx_o = np.flatnonzero(y != h)
    k_h = min(int(round(concentration * k)), int(max_class_rate * idx_h.size))
    k_o = k - k_h
    if k_o > idx_o.size:  # cannot happen for sane accuracies; spill back onto the heavy class
        k_h += k_o - idx_o.size
        k_o = idx_o.size
    rng = np.random.default_rng(seed)
    flip = np.concatenate([rng.choice(idx_h, k_h, replace=False), rng.choice(idx_o, k_o, replace=False)])
    out = y.copy()
    out[flip] = 1 - out[flip]
    return out


def text_hardness(texts, y, *, seed: int = 0, folds: int = 2) -> np.ndarray:
    """Cross-fitted hardness ``1 - p(y_i | text_i)`` from a character n-gram logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(np.int64)
    texts = list(texts)
    X = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True, max_features=100_000).fit_transform(texts)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(np.arange(y.size) % folds)
    hard = np.empty(y.size, dtype=np.float64)
    for f in range(folds):
        tr, te = fold != f, fold == f
        if np.unique(y[tr]).size < 2:
            hard[te] = 0.5
            continue
        m = LogisticRegression(C=2.0, max_iter=2000).fit(X[tr], y[tr])
        p1 = m.predict_proba(X[te])[:, 1]
        hard[te] = np.where(y[te] == 1, 1 - p1, p1)
    return hard


def instance_dependent_noise(
    y, accuracy: float, *, hardness: np.ndarray, seed: int = 0, sharpness: float = 2.0
) -> np.ndarray:
    """Noisy copy of ``y`` with exactly ``round((1-accuracy) n)`` flips drawn with probability ~ hardness**sharpness."""
    y = np.asarray(y).astype(np.int64)
    hardness = np.asarray(hardness, dtype=np.float64)
    if hardness.shape != y.shape:
        raise ValueError("hardness must have one value per row")
    k = _n_flips(y.size, accuracy)
    w = np.clip(hardness, 1e-6, None) ** sharpness
    rng = np.random.default_rng(seed)
    # weighted sampling without replacement (Efraimidis-Spirakis): the k largest u^(1/w)
    keys = np.log(rng.random(y.size)) / w
    flip = np.argsort(-keys)[:k]
    out = y.copy()
    out[flip] = 1 - out[flip]
    return out


def make_noise(setting: str | NoiseSpec, y, *, seed: int, hardness: np.ndarray | None = None) -> np.ndarray:
    spec = NoiseSpec.parse(setting) if isinstance(setting, str) else setting
    if spec.kind == "cc":
        return class_conditional_noise(y, spec.accuracy, seed=seed)
    if hardness is None:
        raise ValueError("instance-dependent noise needs the rows' hardness")
    return instance_dependent_noise(y, spec.accuracy, hardness=hardness, seed=seed)
