"""Backbones: what turns texts into the input of each round's learner.

``get_backbone(name)`` accepts:

* ``minilm`` (default): frozen all-MiniLM-L6-v2 embeddings (English), cached on disk;
* ``st:MODEL_DIR``: any local sentence-transformers folder.
"""

from __future__ import annotations

from pathlib import Path

from silr.backbones.base import Backbone, CachedEncoder

__all__ = ["Backbone", "CachedEncoder", "get_backbone", "load_backbone", "BACKBONE_NAMES"]

BACKBONE_NAMES = ("minilm", "st:MODEL_DIR")


def get_backbone(name: str, **kw) -> Backbone:
    """Build a backbone from its command-line name; an unknown name raises ``ValueError`` listing the valid ones."""
    from silr.backbones.sentence import SentenceTransformerEncoder

    if name == "minilm":
        return SentenceTransformerEncoder(None, name="minilm", **kw)
    if name.startswith("st:"):
        return SentenceTransformerEncoder(name[3:], name=name, **kw)
    raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")


def load_backbone(spec: dict, folder: Path) -> Backbone:
    """Rebuild a saved backbone from its spec (as written in the model folder)."""
    from silr.backbones.sentence import SentenceTransformerEncoder

    kind = spec.get("kind")
    if kind == "sentence-transformers":
        return SentenceTransformerEncoder.load(spec, folder)
    raise ValueError(f"unknown backbone kind {kind!r} in saved model {folder}")
