"""Scoring an instruction-tuned (chat) model: the few-shot prompt rendered in the model's chat template.

The rendered instruction goes in the system turn; the few-shot examples and the text (with the prompt's
``template`` around it, e.g. ``Sentence: {text}\\nAnswer:``) in the user turn; the assistant turn is opened, so the
next token is the answer's first token.  The chat text before the item is the same for every text of a prompt,
so it stays a shared prefix whose key/value cache is reused (see :class:`silr.annotate.local.LocalLMScorer`).

An instruction model answers ``Satire`` or ``satire`` (no leading space: it starts its turn), so the score is
``logsumexp`` over the first tokens of the positive word's case variants (lower, Capitalised, UPPER, each with
and without a leading space) minus the same for the negative word; a first token shared by both words is dropped
from both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .prompts import FewShotPrompt
from .types import AnnotationError

__all__ = ["chat_prompt", "label_variant_ids", "variant_words"]

_MARK_ITEM = "\u2063\u2063SILR-ITEM\u2063\u2063"
_MARK_TEXT = "\u2063\u2063SILR-TEXT\u2063\u2063"


def variant_words(word: str) -> list[str]:
    """Case variants of a label word, each bare and with a leading space, in a fixed order, duplicates removed."""
    w = word.strip()
    cases = [w, w.lower(), w[:1].upper() + w[1:].lower(), w.upper()]
    out: list[str] = []
    for c in cases:
        for v in (c, " " + c):
            if v not in out:
                out.append(v)
    return out


def label_variant_ids(encode: Callable[[str], Sequence[int]], positive: str,
                      negative: str) -> tuple[list[int], list[int]]:
    """First-token ids of each word's case variants (``encode`` maps a string to token ids without special
    tokens).  Ids shared by both words are removed from both; an error when a word is left with none."""
    sides = []
    for w in (positive, negative):
        ids: list[int] = []
        for v in variant_words(w):
            t = list(encode(v))
            if t and t[0] not in ids:
                ids.append(int(t[0]))
        sides.append(ids)
    shared = set(sides[0]) & set(sides[1])
    pos = [i for i in sides[0] if i not in shared]
    neg = [i for i in sides[1] if i not in shared]
    if not pos or not neg:
        raise AnnotationError(
            f"label words {positive!r} and {negative!r}: every case variant of one starts with a token the other "
            "also starts with; pick words that differ in their first token"
        )
    return pos, neg


def chat_prompt(prompt: FewShotPrompt, render: Callable[[list[dict[str, str]]], str]) -> FewShotPrompt:
    """The same prompt laid out as a chat: returns a :class:`FewShotPrompt` whose ``prefix`` is the chat text up
    to the item (system turn with the instruction, user turn with the examples), ``suffix_head`` / ``suffix_tail``
    the item's lines around the text, the tail closing the user turn and opening the assistant's.

    ``render(messages)`` renders a message list with the generation prompt added (``tokenizer.apply_chat_template
    (messages, tokenize=False, add_generation_prompt=True)``).  An error when the template changes the item
    text (then the prefix could not be shared).
    """
    instr = prompt.spec.rendered_instruction()
    user_head = prompt.prefix
    messages: list[dict[str, str]] = []
    if instr and user_head.startswith(instr):
        messages.append({"role": "system", "content": instr})
        user_head = user_head[len(instr):].lstrip("\n")
    user = user_head + _MARK_ITEM + prompt.suffix_head + _MARK_TEXT + prompt.suffix_tail
    messages.append({"role": "user", "content": user})
    full = render(messages)
    if full.count(_MARK_ITEM) != 1 or full.count(_MARK_TEXT) != 1:
        raise AnnotationError("the model's chat template does not keep the user's text as it is; it cannot be "
                              "scored with a shared prefix")
    prefix, rest = full.split(_MARK_ITEM)
    head, tail = rest.split(_MARK_TEXT)
    if head != prompt.suffix_head or not tail.startswith(prompt.suffix_tail):
        raise AnnotationError("the model's chat template changes the prompt's item lines; it cannot be scored "
                              "with a shared prefix")
    out = replace(prompt, prefix=prefix, suffix_head=head, suffix_tail=tail)
    h = hashlib.sha256(f"chat\0{prompt.hash}\0{prefix}\0{head}\0{tail}".encode()).hexdigest()[:32]
    object.__setattr__(out, "hash", h)
    return out


def template_id(tokenizer: Any) -> str:
    """A short hash of the tokenizer's chat template (part of the score cache key)."""
    t = getattr(tokenizer, "chat_template", None) or ""
    return hashlib.sha256(str(t).encode()).hexdigest()[:12]
