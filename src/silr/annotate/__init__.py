"""LLM annotation (round 0): local causal LMs and OpenAI-compatible servers.

Public API (imported lazily, so ``import silr.annotate`` stays cheap)::

    from silr.annotate import (annotate_frame, LocalLMScorer, OpenAICompatibleAnnotator, load_prompt,
                               PromptSpec, ShotPlan, ScoreCache, choose_threshold, AnnotationError)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "annotate_frame": "run",
    "OUTPUT_COLUMNS": "run",
    "LocalLMScorer": "local",
    "ensure_gemma_270m": "local",
    "default_cache_dir": "local",
    "OpenAICompatibleAnnotator": "server",
    "parse_answer": "server",
    "PromptSpec": "prompts",
    "PromptError": "prompts",
    "ShotPlan": "prompts",
    "load_prompt": "prompts",
    "builtin_prompts": "prompts",
    "spec_from_instruction": "prompts",
    "build_prompt": "prompts",
    "ScoreCache": "cache",
    "choose_threshold": "calibrate",
    "AnnotationError": "types",
    "ScoreResult": "types",
    "Annotator": "types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
