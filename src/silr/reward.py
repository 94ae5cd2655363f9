"""A refined classifier as a reward model (paper, section 6: the refined classifier as the RLAIF reward).

:class:`RewardModel` wraps a run folder written by ``silr refine`` (or any backbone + scoring head) and
scores (prompt, response) pairs or plain texts:

* ``reward(prompts, completions, **kw) -> list[float]`` -- the signature of TRL's reward functions
  (``GRPOTrainer(reward_funcs=[reward])``, ``RLOOTrainer``); plain strings or conversational messages;
* ``reward.score(texts) -> np.ndarray`` -- what a best-of-n sampler wants (``queries_to_scores``);
* ``reward.score_pairs(prompts, responses)``.

Pairs are turned into the classifier's input with ``template`` (``{prompt}``, ``{response}``); it must match
how the training texts were written. The default is the ``pku_saferlhf_safety`` format
``"# Prompt: {prompt}\\n# Response: {response}\\n"``.

Sign: the reward is higher for the classifier's *positive* class (label 1). For a data set where 1 means
"bad" (e.g. 1 = unsafe), pass ``invert=True`` (CLI ``--positive-is-bad``) so that reward = "good".
``output="score"`` (default) hands back the classifier's decision score (a logit-like margin, 0 = decision
threshold); ``output="proba"`` the calibrated probability of the rewarded class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["RewardModel", "PKU_PAIR_TEMPLATE", "QA_TEMPLATE", "format_pair", "unwrap_prompt", "message_text"]

#: pair format of the pku_saferlhf_safety data (its README: ``"# Prompt: {prompt}\n# Response: {response}\n"``)
PKU_PAIR_TEMPLATE = "# Prompt: {prompt}\n# Response: {response}\n"
#: base-model friendly generation prompt used by :mod:`silr.align`
QA_TEMPLATE = "Question: {prompt}\nAnswer:"


def format_pair(prompt: str, response: str, template: str = PKU_PAIR_TEMPLATE) -> str:
    """Fill ``template``'s ``{prompt}`` and ``{response}`` (one pass: braces inside the texts are safe)."""
    vals = {"prompt": str(prompt).strip(), "response": str(response).strip()}
    return re.sub(r"\{(prompt|response)\}", lambda m: vals[m.group(1)], template)


def unwrap_prompt(prompt: str, template: str | None = QA_TEMPLATE) -> str:
    """Undo a generation template: ``"Question: X\\nAnswer:"`` -> ``"X"``; other strings come back stripped."""
    p = str(prompt)
    if template and "{prompt}" in template:
        pre, post = template.split("{prompt}", 1)
        pre_s, post_s = pre.strip(), post.strip()
        s = p.strip()
        if s.startswith(pre_s) and s.endswith(post_s) and len(s) >= len(pre_s) + len(post_s):
            return s[len(pre_s) : len(s) - len(post_s)].strip()
    return p.strip()


def message_text(x: Any, role: str | None = None) -> str:
    """Text of a plain string, or of a conversational turn list (``[{"role", "content"}]``): the content of
    the last message with ``role`` (any role when None)."""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return str(x.get("content", ""))
    if isinstance(x, (list, tuple)):
        msgs = [m for m in x if isinstance(m, dict) and (role is None or m.get("role") == role)]
        if not msgs:
            msgs = [m for m in x if isinstance(m, dict)]
        if msgs:
            c = msgs[-1].get("content", "")
            if isinstance(c, list):  # multimodal content parts
                c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            return str(c)
    return str(x)


class RewardModel:
    """Score (prompt, response) pairs or texts with a classifier on a frozen (or fine-tuned) backbone.

    Parameters
    ----------
    backbone : object with ``transform(texts)``
    head : object with ``decision_function(X)`` (a :class:`~silr.refine.SelfIterativeRefiner`, a scikit-learn
        classifier, ...); ``predict_proba(X)`` is needed for ``output="proba"``.
    template : str
        Pair -> text format, with ``{prompt}`` and ``{response}``; must match the classifier's training texts.
    invert : bool
        Reward the negative class (label 0) instead: use when the positive class is the bad one.
    output : ``"score"`` or ``"proba"``
    batch_size : int
        Texts per backbone call (bounds memory for long lists).
    prompt_template : str or None
        A generation template stripped from incoming prompts (TRL passes the templated prompt), default
        ``"Question: {prompt}\\nAnswer:"``; prompts that do not match it are used as they are.
    name : str
        ``__name__`` (TRL logs rewards under it).

    Examples
    --------
    >>> rm = RewardModel.from_run("runs/safety")                        # doctest: +SKIP
    >>> rm(prompts=["How do I pick a lock?"], completions=["I can't help with that."])  # doctest: +SKIP
    [1.73]
    >>> rm.score(["# Prompt: hi\\n# Response: hello\\n"])               # doctest: +SKIP
    array([0.41])
    """

    def __init__(self, backbone: Any, head: Any, *, template: str = PKU_PAIR_TEMPLATE, invert: bool = False,
                 output: str = "score", batch_size: int = 256, prompt_template: str | None = QA_TEMPLATE,
                 name: str = "silr_reward", source: str | None = None):
        if output not in ("score", "proba"):
            raise ValueError(f"output must be 'score' or 'proba', got {output!r}")
        if "{response}" not in template:
            raise ValueError("template must contain {response} (and usually {prompt})")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.backbone = backbone
        self.head = head
        self.template = template
        self.invert = bool(invert)
        self.output = output
        self.batch_size = int(batch_size)
        self.prompt_template = prompt_template
        self.__name__ = name
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, *, progress: bool = False, **kw) -> "RewardModel":
        """Load the refined classifier of a ``silr refine`` run folder (or its ``model/`` folder)."""
        from silr.run_folder import load_model

        refiner, bb = load_model(run_dir)
        if hasattr(bb, "progress"):
            bb.progress = progress
        return cls(bb, refiner, source=str(Path(run_dir)), **kw)

    @classmethod
    def from_function(cls, fn: Callable[[list[str]], Any], **kw) -> "RewardModel":
        """Wrap any ``texts -> scores`` function (higher = positive class)."""

        class _Identity:
            def transform(self, texts):
                return list(texts)

        class _Head:
            def decision_function(self, X):
                return np.asarray(fn(list(X)), dtype=np.float64)

        return cls(_Identity(), _Head(), **kw)

    # ------------------------------------------------------------------ scoring
    def format(self, prompt: str, response: str) -> str:
        return format_pair(unwrap_prompt(prompt, self.prompt_template), response, self.template)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Reward of already formatted texts (float64 array, one per text)."""
        texts = [str(t) for t in texts]
        out = np.empty(len(texts), dtype=np.float64)
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s : s + self.batch_size]
            X = self.backbone.transform(chunk)
            if self.output == "proba":
                p = np.asarray(self.head.predict_proba(X), dtype=np.float64)[:, 1]
                out[s : s + len(chunk)] = 1.0 - p if self.invert else p
            else:
                z = np.asarray(self.head.decision_function(X), dtype=np.float64).ravel()
                out[s : s + len(chunk)] = -z if self.invert else z
        return out

    def score_pairs(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return self.score([self.format(message_text(p, "user"), message_text(r, "assistant"))
                           for p, r in zip(prompts, responses)])

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float]:
        """TRL reward-function signature: one float per (prompt, completion)."""
        if completions is None:
            raise TypeError("completions is required")
        if prompts is None:
            prompts = [""] * len(completions)
        return [float(v) for v in self.score_pairs(prompts, completions)]

    def describe(self) -> dict:
        return {"source": self.source, "template": self.template, "invert": self.invert, "output": self.output,
                "prompt_template": self.prompt_template}

    def __repr__(self) -> str:
        return f"RewardModel(source={self.source!r}, invert={self.invert}, output={self.output!r})"
