"""Few-shot K-class prompts: examples drawn from the labeled sample, the same number per class.

A :class:`KShotPlan` chooses the examples (deterministic from ``seed``; empty and repeated texts skipped) and
gives each text its prompt: the main prompt, or, for a text that is itself one of the examples, the main prompt
with that example replaced by the next one of its class (leave-itself-out: a labeled row's own gold label never
sits in the prompt that labels it, as in the binary :class:`silr.annotate.prompts.ShotPlan`).
:func:`score_by_plan` runs any K-class scorer (local model or server) text group by text group.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from silr.annotate.prompts import normalize_text, seeded_candidates
from silr.annotate.types import AnnotationError

__all__ = ["KShotPlan", "score_by_plan", "shots_per_class"]


def shots_per_class(shots: int, K: int) -> int:
    """Examples per class for ``shots`` requested in all: rounded up so every class has as many (0 stays 0)."""
    if shots < 0:
        raise AnnotationError(f"--shots must be >= 0, got {shots}")
    return -(-shots // K) if shots else 0


class KShotPlan:
    """``shots`` examples in all (rounded up to the same number per class) from the labeled rows ``texts`` with
    gold ``labels`` (each one of ``spec.label_words``), interleaved in a seeded order. A class with fewer usable
    rows than its share gives what it has (noted in ``notes``)."""

    def __init__(self, spec, texts: Sequence[str], labels: Sequence[str], *, shots: int, seed: int = 0,
                 what: str = "labeled sample"):
        words = list(spec.label_words)
        texts, labels = [str(t) for t in texts], [str(v).strip() for v in labels]
        if len(texts) != len(labels):
            raise ValueError("texts and labels must have the same length")
        low = {w.lower(): w for w in words}
        for i, v in enumerate(labels):
            if v.lower() not in low:
                raise AnnotationError(f"{what}: row {i + 1} has label {v!r}, not one of the label words "
                                      f"{', '.join(words)} (few-shot examples need a label word as their label)")
        labels = [low[v.lower()] for v in labels]
        self.spec, self.per_class = spec, shots_per_class(shots, len(words))
        rng = np.random.default_rng(seed)
        self._order: dict[str, list[int]] = {w: seeded_candidates(texts, labels, w, rng) for w in words}
        self._texts, self._labels = texts, labels
        self._seq_seed = int(rng.integers(2**31))
        self._chosen = [i for w in words for i in self._order[w][: self.per_class]]
        self.notes = [f"class '{w}' has {len(self._order[w])} usable labeled rows for {self.per_class} examples"
                      for w in words if len(self._order[w]) < self.per_class]
        self._keys = {normalize_text(texts[i]): i for i in self._chosen}
        self.main = self._make(self._chosen)
        self._alt: dict[str, object] = {}

    def _make(self, chosen: list[int]):
        # a seeded order, so the last example's label is not always the same class
        seq = [chosen[int(j)] for j in np.random.default_rng(self._seq_seed).permutation(len(chosen))]
        return replace(self.spec, examples=tuple((self._texts[i], self._labels[i]) for i in seq))

    @property
    def examples(self) -> list[tuple[str, str]]:
        return list(self.main.examples)

    @property
    def example_rows(self) -> list[int]:
        """Positions (0-based) in the labeled sample of the main prompt's examples."""
        return sorted(self._chosen)

    def prompt_for(self, text: str):
        key = normalize_text(text)
        i = self._keys.get(key)
        if i is None:
            return self.main
        if key not in self._alt:
            spare = [j for j in self._order[self._labels[i]] if j not in self._chosen]
            self._alt[key] = self._make([j for j in self._chosen if j != i] + spare[:1])
        return self._alt[key]


def score_by_plan(score: Callable, texts: Sequence[str], plan: KShotPlan | None, spec, K: int,
                  on_batch: Callable | None = None):
    """``score(texts, prompt, on_batch)`` -> ``(log-probabilities, truncated[, counts])`` run once per prompt: the
    main prompt for every text but the examples' own, each of those with its leave-itself-out prompt. Returns
    the arrays in ``texts`` order (and the summed counts when ``score`` gives them)."""
    if plan is None:
        return score(texts, spec, on_batch)
    groups: dict[int, tuple[object, list[int]]] = {}
    for i, t in enumerate(texts):
        p = plan.prompt_for(t)
        groups.setdefault(id(p), (p, []))[1].append(i)
    lp = np.full((len(texts), K), np.nan)
    cut = np.zeros(len(texts), dtype=bool)
    counts: dict | None = None
    done = 0
    for p, idx in sorted(groups.values(), key=lambda g: -len(g[1])):
        base = done

        def progress(n, _total, base=base):
            if on_batch:
                on_batch(base + n, len(texts))

        res = score([texts[i] for i in idx], p, progress)
        lp[idx], cut[idx] = res[0], res[1]
        if len(res) > 2:
            counts = {k: (counts or {}).get(k, 0) + v for k, v in res[2].items()}
        done += len(idx)
    return (lp, cut) if counts is None else (lp, cut, counts)
