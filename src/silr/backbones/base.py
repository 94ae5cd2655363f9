"""The backbone seam: what turns texts into what a round's learner consumes.

A backbone is chosen by name (``minilm``, ``e5``, ``ngram``, ``lora:MODEL_DIR`` ...). The refinement loop
only sees ``transform(texts)`` (features, or the texts themselves for a fine-tuned model) and
``new_learner(round)`` (``None`` means the default trainable head on those features).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np

from silr.backbones.cache import FeatureCache, default_cache_dir, text_key

__all__ = ["Backbone", "CachedEncoder"]


class Backbone(ABC):
    """Base class of every backbone."""

    #: registry name, e.g. ``"minilm"``
    name: str = ""

    def fit(self, texts: Sequence[str]) -> "Backbone":
        """Learn what the features need from the corpus (no-op for frozen encoders)."""
        return self

    @abstractmethod
    def transform(self, texts: Sequence[str]):
        """Texts -> the learner's input (dense array, sparse matrix, or texts)."""

    def new_learner(self, round: int, **head_params):
        """A fresh learner for one round, or ``None`` for the default head on the features."""
        return None

    def load_learner(self, config: dict, state: dict):
        """Rebuild a saved learner of this backbone (only for backbones with their own learner)."""
        raise NotImplementedError(f"backbone {self.name!r} has no learner of its own")

    @abstractmethod
    def spec(self) -> dict:
        """JSON-able description, recorded in ``rounds.json`` and the saved model."""

    def save(self, folder: Path) -> None:
        """Save any fitted state (vocabularies ...) into ``folder``; frozen encoders have none."""

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "Backbone":
        raise NotImplementedError


class CachedEncoder(Backbone):
    """A frozen sentence encoder whose features are cached on disk by content and computed in chunks.

    Subclasses implement :meth:`_encode` (a list of texts -> float32 array) and :attr:`model_id`.
    """

    dim: int = 0
    model_id: str = ""
    chunk_size: int = 2048

    def __init__(self, *, cache_dir: str | Path | None = None, progress: bool = True, use_cache: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.progress = progress
        self.use_cache = use_cache

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray: ...

    def _cache(self) -> FeatureCache:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_id)
        return FeatureCache(self.cache_dir / "features" / f"{safe}.sqlite", self.dim)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        cache = self._cache() if self.use_cache else None
        found = cache.get_many(keys) if cache is not None else {}
        todo_keys = list(dict.fromkeys(k for k in keys if k not in found))
        if todo_keys:
            first_text = {}
            for k, t in zip(keys, texts):
                first_text.setdefault(k, t)
            from silr.progress import progress_bar

            with progress_bar(f"encoding with {self.name}", total=len(todo_keys), enabled=self.progress) as advance:
                for start in range(0, len(todo_keys), self.chunk_size):
                    chunk = todo_keys[start : start + self.chunk_size]
                    vecs = self._encode([first_text[k] for k in chunk])
                    if cache is not None:
                        cache.put_many(zip(chunk, vecs))
                    found.update(zip(chunk, vecs))
                    advance(len(chunk))
        if cache is not None:
            cache.close()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out
