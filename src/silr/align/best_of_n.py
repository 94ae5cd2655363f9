"""Best-of-n: sample ``n`` answers per prompt, keep the one the reward ranks highest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from silr.align.policy import sample_answers


def pick_best(rewards: np.ndarray) -> np.ndarray:
    """Index of the highest reward in each row (the first one on ties)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError("rewards must be a (prompts, n) array")
    return np.argmax(np.where(np.isnan(r), -np.inf, r), axis=1)


@dataclass
class BestOfN:
    prompts: list[str]
    samples: list[list[str]]
    rewards: np.ndarray  # (prompts, n)
    best: np.ndarray     # index of the kept answer per prompt

    @property
    def answers(self) -> list[str]:
        return [s[i] for s, i in zip(self.samples, self.best)]

    @property
    def best_rewards(self) -> np.ndarray:
        return self.rewards[np.arange(len(self.best)), self.best]

    def to_records(self) -> list[dict]:
        return [{"prompt": p, "samples": s, "rewards": [float(x) for x in r], "best": int(b)}
                for p, s, r, b in zip(self.prompts, self.samples, self.rewards, self.best)]


def score_samples(reward: Callable, prompts: Sequence[str], samples: Sequence[Sequence[str]]) -> np.ndarray:
    """Reward of every sample: a (prompts, n) array (one reward call over all pairs)."""
    n = len(samples[0]) if samples else 0
    if any(len(s) != n for s in samples):
        raise ValueError("every prompt needs the same number of samples")
    flat_p = [p for p, s in zip(prompts, samples) for _ in s]
    flat_c = [c for s in samples for c in s]
    r = np.asarray(reward(prompts=flat_p, completions=flat_c), dtype=np.float64) if flat_c else np.zeros(0)
    return r.reshape(len(samples), n)


def best_of_n(model, tokenizer, prompts: Sequence[str], reward: Callable, *, n: int = 4,
              samples: Sequence[Sequence[str]] | None = None, **sample_kw) -> BestOfN:
    """Sample ``n`` answers per prompt (or take ``samples``) and keep the highest-reward one."""
    if samples is None:
        samples = sample_answers(model, tokenizer, prompts, n=n, **sample_kw)
    R = score_samples(reward, prompts, samples)
    return BestOfN(list(prompts), [list(s) for s in samples], R, pick_best(R))
