"""K-class annotation with a local causal LM: one forward pass per text, K label words.

The prompt ends where the answer word starts; the next-token log-probabilities of each label word's first token
are read from that one pass and normalised over the K words (``log_softmax`` over the K log-probabilities), so
each row gets K scores that are log-probabilities summing to one in probability; the argmax is the pseudo-label.
Texts are batched and the instruction's key/value cache is reused (:class:`silr.annotate.local.LocalLMScorer`).

A prompt file (TOML or JSON) for K classes::

    instruction = "What is the topic of this news text?"
    label_words = ["earnings", "acquisition", "oil"]     # K >= 2 words, in class order
    template = "Text: {text}\\nTopic:"                  # optional; must contain {text}
    max_text_chars = 1500                                # optional
    examples = [{text = "Shares of X rose 5% after ...", label = "earnings"}]   # optional fixed examples

Examples (fixed in the file, or drawn from the labeled sample: :mod:`silr.multiclass.shots`) follow the
instruction in the shared prefix, each as the template filled with its text and followed by its label word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from silr.annotate.types import AnnotationError

__all__ = ["KPrompt", "load_kprompt", "kprompt_from_words", "kclass_scores", "center_scores", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = "Text: {text}\nAnswer:"
_FIELDS = {"name", "instruction", "label_words", "template", "max_text_chars", "examples"}


@dataclass(frozen=True)
class KPrompt:
    """A K-class prompt: ``prefix`` (instruction, the label words and the ``examples``, shared by every text,
    cached) then ``suffix`` (the template with the text). ``examples``: ``(text, label word)`` pairs (none:
    zero-shot)."""

    instruction: str
    label_words: tuple
    template: str = DEFAULT_TEMPLATE
    max_text_chars: int = 1500
    name: str = "kclass"
    source: str = "--label-words"
    notes: list = field(default_factory=list)
    examples: tuple = ()

    def __post_init__(self):
        words = [str(w).strip() for w in self.label_words]
        if len(words) < 2 or any(not w for w in words):
            raise AnnotationError(f"{self.source}: label_words needs at least two non-empty words, got {list(self.label_words)!r}")
        if len(set(w.lower() for w in words)) != len(words):
            raise AnnotationError(f"{self.source}: label_words has a repeated word: {words!r}")
        if "{text}" not in self.template:
            raise AnnotationError(f"{self.source}: template must contain {{text}}, got {self.template!r}")
        if not self.instruction.strip():
            raise AnnotationError(f"{self.source}: instruction is empty")
        object.__setattr__(self, "label_words", tuple(words))
        low = {w.lower(): w for w in words}
        ex = []
        for i, e in enumerate(self.examples):
            if not (isinstance(e, (tuple, list)) and len(e) == 2 and str(e[0]).strip()):
                raise AnnotationError(f"{self.source}: example {i + 1} must be a text and a label, got {e!r}")
            lab = str(e[1]).strip().lower()
            if lab not in low:
                raise AnnotationError(f"{self.source}: example {i + 1} has label {e[1]!r}, not one of the label "
                                      f"words {', '.join(words)}")
            ex.append((str(e[0]), low[lab]))
        object.__setattr__(self, "examples", tuple(ex))

    @property
    def K(self) -> int:
        return len(self.label_words)

    @property
    def prefix(self) -> str:
        shots = "".join(f"{self.suffix(self.clip(x)[0])} {w}\n\n" for x, w in self.examples)
        return f"{self.instruction.strip()}\nAnswer with one word: {', '.join(self.label_words)}.\n\n{shots}"

    def clip(self, text: str) -> tuple[str, bool]:
        t = " ".join(str(text).split())
        return (t[: self.max_text_chars], True) if len(t) > self.max_text_chars else (t, False)

    def suffix(self, clipped_text: str) -> str:
        return self.template.replace("{text}", clipped_text)

    def to_dict(self) -> dict:
        d = {"name": self.name, "instruction": self.instruction, "label_words": list(self.label_words),
             "template": self.template, "max_text_chars": self.max_text_chars}
        if self.examples:  # (a zero-shot prompt's record, and its cache key, stay as they were)
            d["examples"] = [{"text": x, "label": w} for x, w in self.examples]
        return d


def kprompt_from_words(label_words: str | Sequence[str], instruction: str | None = None, **kw) -> KPrompt:
    """``--label-words a,b,c`` (comma-separated) and an optional ``--instruction``."""
    words = [w.strip() for w in label_words.split(",")] if isinstance(label_words, str) else list(label_words)
    instr = instruction or "Which of these labels fits the text best?"
    return KPrompt(instr, tuple(words), **kw)


def load_kprompt(path: str | Path) -> KPrompt:
    """A K-class prompt from a TOML or JSON file (fields: instruction, label_words, template, max_text_chars, name)."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as e:
        raise AnnotationError(f"cannot read prompt file '{p}': {e.strerror}") from e
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import tomllib

            data = tomllib.loads(raw)
    except (ValueError, json.JSONDecodeError) as e:
        raise AnnotationError(f"prompt file '{p}' is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {e}") from e
    if not isinstance(data, dict):
        raise AnnotationError(f"prompt file '{p}' must hold a table of fields")
    extra = sorted(set(data) - _FIELDS)
    if extra:
        raise AnnotationError(f"prompt file '{p}': unknown field '{extra[0]}' (fields: {', '.join(sorted(_FIELDS))})")
    for req in ("instruction", "label_words"):
        if req not in data:
            raise AnnotationError(f"prompt file '{p}': missing required field '{req}'")
    if not isinstance(data["label_words"], list):
        raise AnnotationError(f"prompt file '{p}': label_words must be a list of words, e.g. [\"sports\", \"politics\", \"tech\"]")
    ex = data.get("examples", [])
    if not isinstance(ex, list) or not all(isinstance(e, dict) and set(e) == {"text", "label"} for e in ex):
        raise AnnotationError(f"prompt file '{p}': examples must be a list of tables with a text and a label, e.g. "
                              "[{text = \"...\", label = \"sports\"}]")
    return KPrompt(str(data["instruction"]), tuple(data["label_words"]), template=data.get("template", DEFAULT_TEMPLATE),
                   max_text_chars=int(data.get("max_text_chars", 1500)), name=str(data.get("name", p.stem)),
                   source=f"prompt file '{p}'", examples=tuple((e["text"], e["label"]) for e in ex))


def label_token_ids(scorer, words: Sequence[str]) -> list[int]:
    """The first token of each label word as the answer's next token (with a leading space); distinct."""
    ids = []
    for w in words:
        t = scorer._encode(" " + w)
        if not t:
            raise AnnotationError(f"label word {w!r} is empty for the tokenizer")
        ids.append(t[0])
    seen = {}
    for w, i in zip(words, ids):
        if i in seen:
            raise AnnotationError(f"label words {seen[i]!r} and {w!r} start with the same token; pick words that "
                                  "differ in their first token")
        seen[i] = w
    return ids


def kclass_scores(scorer, texts: Sequence[str], prompt: KPrompt, *, on_batch=None) -> tuple[np.ndarray, np.ndarray]:
    """``(log-probabilities (n, K) normalised over the K words, truncated flags (n,))`` from one forward pass per
    text (batched; ``scorer`` a :class:`~silr.annotate.local.LocalLMScorer`)."""
    import torch

    ids = torch.tensor(label_token_ids(scorer, prompt.label_words))
    out = np.zeros((len(texts), prompt.K), dtype=np.float64)
    cut = np.zeros(len(texts), dtype=bool)
    head = scorer._head()[1]
    cap = getattr(scorer.model.config, "final_logit_softcapping", None)
    done = 0
    for idx, h, cuts in scorer._hidden(texts, prompt):
        with torch.inference_mode():
            logits = head(h).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            lp = torch.log_softmax(logits, dim=-1)[:, ids.to(logits.device)]
            lp = torch.log_softmax(lp, dim=-1)  # normalised over the K label words
        out[idx] = lp.cpu().double().numpy()
        cut[idx] = cuts
        done += len(idx)
        if on_batch:
            on_batch(done, len(texts))
    return out, cut


def center_scores(logp: np.ndarray) -> np.ndarray:
    """Label-free calibration: each class's mean log-probability over the corpus subtracted (a small model's
    bias towards one word, e.g. the first, is removed; no gold label is read). Its argmax is the centred label."""
    lp = np.asarray(logp, dtype=np.float64)
    return lp - lp.mean(0, keepdims=True)
