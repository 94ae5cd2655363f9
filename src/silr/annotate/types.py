"""Shared types of the annotation package."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class AnnotationError(RuntimeError):
    """A failure the user can act on (bad key, unknown model, unreachable server, bad prompt...).

    The message is one clear line and never contains an API key.
    """


@dataclass(frozen=True)
class ScoreResult:
    """One scored text: ``score`` (higher = positive) or ``None`` when the model abstained."""

    score: float | None
    abstained: bool = False
    truncated: bool = False

    @staticmethod
    def abstain(truncated: bool = False) -> "ScoreResult":
        return ScoreResult(None, True, truncated)


@runtime_checkable
class Annotator(Protocol):
    """Anything that scores texts under a rendered few-shot prompt.

    ``model_id`` names the model for the cache key (never a secret).  ``settings_id`` names any setting that
    changes scores (e.g. the token limit) and goes into the prompt hash.  ``score`` yields ``(index, result)``
    pairs as they are produced (any order), one per input text, so that callers can cache them at once.
    """

    model_id: str

    @property
    def settings_id(self) -> str: ...

    def score(self, texts: Sequence[str], prompt: "object") -> Iterator[tuple[int, ScoreResult]]: ...
