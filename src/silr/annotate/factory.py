"""The one place an annotator is built from its model name (``silr annotate``, ``silr run``, ``silr demo``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SERVER_PREFIX", "make_annotator"]

#: A model name starting with this talks to an OpenAI-compatible server; anything else is a local model.
SERVER_PREFIX = "openai:"


def make_annotator(
    model: str,
    *,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    api: str = "chat",
    concurrency: int = 4,
    timeout: float = 60.0,
    batch_size: int = 16,
    max_text_tokens: int = 256,
    dtype: str = "float32",
):
    """``openai:MODEL`` -> :class:`~silr.annotate.server.OpenAICompatibleAnnotator` (``base_url`` / ``api_key``
    default to the environment; the key is never written anywhere); anything else ->
    :class:`~silr.annotate.local.LocalLMScorer` (``gemma-3-270m`` or a local transformers folder; ``dtype`` float32 or
    bfloat16)."""
    if model.startswith(SERVER_PREFIX):
        from silr.annotate.server import OpenAICompatibleAnnotator

        return OpenAICompatibleAnnotator(model[len(SERVER_PREFIX):], base_url=base_url or None, api_key=api_key or None,
                                         api=api, concurrency=concurrency, timeout=timeout)
    from silr.annotate.local import LocalLMScorer

    return LocalLMScorer(model, cache_dir=cache_dir, batch_size=batch_size, max_text_tokens=max_text_tokens, dtype=dtype)
