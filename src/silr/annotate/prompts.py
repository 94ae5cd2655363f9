"""Prompt specs (TOML or YAML) and deterministic, balanced few-shot prompts.

A spec file holds::

    instruction = "Classify each movie review as positive or negative."   # required
    template = "{instruction}\\n\\n{examples}Review: {text}\\nSentiment:"   # {examples} before {text}
    example_template = "Review: {text}\\nSentiment:{label}\\n\\n"           # {text}, {label}
    max_text_chars = 1000
    [label_words]              # required; the scorer compares the FIRST token of each
    positive = " positive"
    negative = " negative"
    [label_meanings]           # optional; usable in the instruction as {positive_meaning}/{negative_meaning}
    positive = "the reviewer liked the film"
    negative = "the reviewer disliked the film"

In ``instruction`` the placeholders ``{positive}``/``{negative}`` (label words, stripped) and
``{positive_meaning}``/``{negative_meaning}`` are filled in.  Few-shot examples come only from the labeled sample
(text + gold label): balanced between the classes, chosen and ordered deterministically from the seed.  A text
that is itself one of the shots is scored with that shot swapped for another of the same class (never its own
shot), so its score stays honest for calibration.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .types import AnnotationError

PROMPT_FORMAT_VERSION = "1"
_ALLOWED = {"name", "description", "instruction", "template", "example_template", "label_words",
            "label_meanings", "max_text_chars"}
_REQUIRED = ("instruction", "label_words")
DEFAULT_TEMPLATE = "{instruction}\n\n{examples}Text: {text}\nLabel:"
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nLabel:{label}\n\n"
DEFAULT_MAX_TEXT_CHARS = 1500
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PromptError(AnnotationError, ValueError):
    """A prompt spec that cannot be used; the message names the file and the field."""


def _fill(template: str, values: dict[str, str], where: str, allowed: Sequence[str]) -> str:
    """Replace ``{name}`` placeholders in one pass (values are never re-scanned, braces in texts are safe)."""

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in allowed:
            raise PromptError(f"{where}: unknown placeholder {{{name}}} (allowed: {', '.join(allowed)})")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def normalize_text(text: str) -> str:
    """One line per text inside a prompt: runs of whitespace (newlines included) become one space."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class PromptSpec:
    instruction: str
    positive: str
    negative: str
    template: str = DEFAULT_TEMPLATE
    example_template: str = DEFAULT_EXAMPLE_TEMPLATE
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    label_meanings: dict[str, str] | None = None
    name: str = "custom"
    source: str = "<inline>"

    def __post_init__(self) -> None:
        src = self.source
        for fname in ("instruction", "template", "example_template", "positive", "negative"):
            v = getattr(self, fname)
            if not isinstance(v, str):
                raise PromptError(f"{src}: field '{_field_path(fname)}' must be a string, got {type(v).__name__}")
        if not self.positive.strip() or not self.negative.strip():
            raise PromptError(f"{src}: field 'label_words' needs non-empty 'positive' and 'negative' words")
        if self.positive.strip().lower() == self.negative.strip().lower():
            raise PromptError(f"{src}: field 'label_words': positive and negative words are the same")
        names = _PLACEHOLDER.findall(self.template)
        if names.count("text") != 1:
            raise PromptError(f"{src}: field 'template' must contain {{text}} exactly once")
        if "examples" not in names:
            raise PromptError(f"{src}: field 'template' must contain {{examples}} (before {{text}})")
        t = self.template
        if t.index("{examples}") > t.index("{text}") or ("{instruction}" in t and t.index("{instruction}") > t.index("{text}")):
            raise PromptError(f"{src}: field 'template': {{instruction}} and {{examples}} must come before {{text}}")
        _fill(t, {k: "" for k in ("instruction", "examples", "text")}, f"{src}: field 'template'",
              ("instruction", "examples", "text"))
        ex = _PLACEHOLDER.findall(self.example_template)
        if "text" not in ex or "label" not in ex:
            raise PromptError(f"{src}: field 'example_template' must contain {{text}} and {{label}}")
        _fill(self.example_template, {"text": "", "label": ""}, f"{src}: field 'example_template'", ("text", "label"))
        if not isinstance(self.max_text_chars, int) or isinstance(self.max_text_chars, bool) or self.max_text_chars < 1:
            raise PromptError(f"{src}: field 'max_text_chars' must be a positive integer")
        if self.label_meanings is not None:
            if not isinstance(self.label_meanings, dict) or set(self.label_meanings) - {"positive", "negative"}:
                raise PromptError(f"{src}: field 'label_meanings' must be a table with keys 'positive'/'negative'")
        self.rendered_instruction()  # validates its placeholders

    def rendered_instruction(self) -> str:
        m = self.label_meanings or {}
        vals = {
            "positive": self.positive.strip(),
            "negative": self.negative.strip(),
            "positive_meaning": str(m.get("positive", self.positive.strip())),
            "negative_meaning": str(m.get("negative", self.negative.strip())),
        }
        return _fill(self.instruction, vals, f"{self.source}: field 'instruction'", tuple(vals))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "instruction": self.instruction,
            "label_words": {"positive": self.positive, "negative": self.negative},
            "label_meanings": self.label_meanings,
            "template": self.template,
            "example_template": self.example_template,
            "max_text_chars": self.max_text_chars,
        }

    def with_updates(self, **kw: Any) -> "PromptSpec":
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update(kw)
        return PromptSpec(**d)


def _field_path(name: str) -> str:
    return {"positive": "label_words.positive", "negative": "label_words.negative"}.get(name, name)


def builtin_prompts() -> list[str]:
    """Names of the prompt specs shipped with silr (``src/silr/prompts/*.toml``)."""
    root = resources.files("silr").joinpath("prompts")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _parse_mapping(data: Any, source: str) -> PromptSpec:
    if not isinstance(data, dict):
        raise PromptError(f"{source}: a prompt spec must be a table/mapping of fields")
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise PromptError(f"{source}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(_ALLOWED))})")
    for req in _REQUIRED:
        if req not in data:
            raise PromptError(f"{source}: missing required field '{req}'")
    lw = data["label_words"]
    if not isinstance(lw, dict):
        raise PromptError(f"{source}: field 'label_words' must be a table with 'positive' and 'negative'")
    for k in ("positive", "negative"):
        if k not in lw:
            raise PromptError(f"{source}: missing required field 'label_words.{k}'")
    extra = sorted(set(lw) - {"positive", "negative"})
    if extra:
        raise PromptError(f"{source}: unknown field 'label_words.{extra[0]}'")
    return PromptSpec(
        instruction=data["instruction"],
        positive=lw["positive"],
        negative=lw["negative"],
        template=data.get("template", DEFAULT_TEMPLATE),
        example_template=data.get("example_template", DEFAULT_EXAMPLE_TEMPLATE),
        max_text_chars=data.get("max_text_chars", DEFAULT_MAX_TEXT_CHARS),
        label_meanings=data.get("label_meanings"),
        name=str(data.get("name", Path(source).stem)),
        source=source,
    )


def load_prompt(path_or_name: str | Path) -> PromptSpec:
    """Load a spec from a ``.toml``/``.yaml``/``.yml`` file, or a built-in by name (``sentiment``, ``spam``...)."""
    p = Path(path_or_name).expanduser()
    if not p.exists():
        name = str(path_or_name)
        if name.endswith(".toml"):
            name = name[:-5]
        if "/" not in name and name in builtin_prompts():
            text = resources.files("silr").joinpath("prompts", f"{name}.toml").read_text(encoding="utf-8")
            return _parse_text(text, f"builtin:{name}", "toml")
        raise PromptError(
            f"prompt file not found: {path_or_name} (built-in prompts: {', '.join(builtin_prompts())})"
        )
    suffix = p.suffix.lower()
    kind = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
    if kind is None:
        raise PromptError(f"{p}: prompt files must be .toml, .yaml or .yml")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PromptError(f"{p}: cannot read prompt file ({e})") from e
    return _parse_text(text, str(p), kind)


def _parse_text(text: str, source: str, kind: str) -> PromptSpec:
    try:
        if kind == "toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise PromptError(f"{source}: not valid {kind.upper()}: {e}".splitlines()[0]) from e
    spec = _parse_mapping(data, source)
    if spec.name == Path(source).stem and source.startswith("builtin:"):
        spec = spec.with_updates(name=source.split(":", 1)[1])
    return spec


def spec_from_instruction(instruction: str, label_words: str | Sequence[str], base: PromptSpec | None = None) -> PromptSpec:
    """Spec for ``--instruction TEXT --label-words POS,NEG`` (a leading space is added to each word if missing,
    because the word follows ``Label:`` in the prompt)."""
    if isinstance(label_words, str):
        words = [w for w in label_words.split(",")]
    else:
        words = list(label_words)
    if len(words) != 2 or not all(w.strip() for w in words):
        raise PromptError("--label-words must be two words, positive first: e.g. --label-words satire,news")
    pos, neg = (w if w[:1].isspace() else " " + w for w in (w.strip() for w in words))
    if base is None:
        return PromptSpec(instruction=instruction, positive=pos, negative=neg, name="custom", source="<command line>")
    return base.with_updates(instruction=instruction, positive=pos, negative=neg, source=f"{base.source} + <command line>")


# --------------------------------------------------------------------------- few-shot prompts


@dataclass(frozen=True)
class Shot:
    text: str
    label: int
    row: Any  # index label of the row in the labeled sample


@dataclass(frozen=True)
class FewShotPrompt:
    """A rendered prompt: ``prefix`` (shared by every text) + ``suffix(text)``.

    The split falls at the last newline before ``{text}`` so that the prefix/suffix token boundary is a natural
    one.  ``hash`` identifies everything that changes a score (templates, shots, label words, limits).
    """

    spec: PromptSpec
    shots: tuple[Shot, ...]
    prefix: str
    suffix_head: str
    suffix_tail: str
    hash: str = field(default="")

    @property
    def positive(self) -> str:
        return self.spec.positive

    @property
    def negative(self) -> str:
        return self.spec.negative

    def clip(self, text: str) -> tuple[str, bool]:
        """Normalise whitespace and cut to ``max_text_chars``; returns (text, truncated)."""
        t = normalize_text(text)
        if len(t) > self.spec.max_text_chars:
            return t[: self.spec.max_text_chars], True
        return t, False

    def suffix(self, clipped_text: str) -> str:
        return self.suffix_head + clipped_text + self.suffix_tail

    def render(self, text: str) -> str:
        return self.prefix + self.suffix(self.clip(text)[0])

    def with_hash(self, settings: str = "") -> str:
        h = hashlib.sha256()
        h.update(json.dumps([PROMPT_FORMAT_VERSION, self.prefix, self.suffix_head, self.suffix_tail,
                             self.spec.positive, self.spec.negative, self.spec.max_text_chars, settings]).encode())
        return h.hexdigest()[:32]


def build_prompt(spec: PromptSpec, shots: Sequence[Shot] = ()) -> FewShotPrompt:
    examples = "".join(
        _fill(spec.example_template, {"text": normalize_text(s.text)[: spec.max_text_chars],
                                      "label": spec.positive if s.label == 1 else spec.negative},
              f"{spec.source}: field 'example_template'", ("text", "label"))
        for s in shots
    )
    t = spec.template
    i = t.index("{text}")
    head = _fill(t[:i], {"instruction": spec.rendered_instruction(), "examples": examples, "text": ""},
                 f"{spec.source}: field 'template'", ("instruction", "examples", "text"))
    tail = _fill(t[i + len("{text}"):], {"instruction": "", "examples": "", "text": ""},
                 f"{spec.source}: field 'template'", ("instruction", "examples", "text"))
    cut = head.rfind("\n") + 1
    fp = FewShotPrompt(spec, tuple(shots), head[:cut], head[cut:], tail)
    object.__setattr__(fp, "hash", fp.with_hash())
    return fp


def seeded_candidates(texts: Sequence[str], labels: Sequence[Any], label: Any, rng) -> list[int]:
    """Positions of the rows labelled ``label``, in an order drawn from ``rng``; empty texts skipped, a repeated text
    (after :func:`normalize_text`) kept once (its first position in that order). The examples' pool of a few-shot
    plan (binary :class:`ShotPlan`, K-class :class:`silr.multiclass.shots.KShotPlan`)."""
    idx = [i for i in range(len(texts)) if labels[i] == label and normalize_text(texts[i])]
    seen: set[str] = set()
    ordered = []
    for j in rng.permutation(len(idx)):
        k = idx[int(j)]
        key = normalize_text(texts[k])
        if key not in seen:
            seen.add(key)
            ordered.append(k)
    return ordered


class ShotPlan:
    """Chooses balanced few-shot examples from the labeled sample, deterministically from ``seed``.

    ``prompt_for(text)`` gives the main prompt, or for a text equal to one of the shots, a prompt where that
    shot is replaced by the next candidate of the same class (leave-itself-out).
    """

    def __init__(self, spec: PromptSpec, texts: Sequence[str] = (), labels: Sequence[int] = (),
                 rows: Sequence[Any] | None = None, shots: int = 4, seed: int = 0):
        self.spec = spec
        texts = [str(t) for t in texts]
        labels = [int(v) for v in labels]
        rows = list(rows) if rows is not None else list(range(len(texts)))
        if not (len(texts) == len(labels) == len(rows)):
            raise ValueError("texts, labels and rows must have the same length")
        if shots < 0:
            raise ValueError("shots must be >= 0")
        rng = np.random.default_rng(seed)
        # candidates per class, in a seeded order; empty texts and duplicates are skipped
        self._order: dict[int, list[int]] = {c: seeded_candidates(texts, labels, c, rng) for c in (1, 0)}
        self._texts, self._labels, self._rows = texts, labels, rows
        n_avail = len(self._order[1]) + len(self._order[0])
        k = min(shots, n_avail)
        want_pos = min(len(self._order[1]), (k + 1) // 2 if rng.random() < 0.5 else k // 2)
        want_neg = min(len(self._order[0]), k - want_pos)
        want_pos = min(len(self._order[1]), k - want_neg)
        self.n_pos, self.n_neg = want_pos, want_neg
        self._perm_seed = int(rng.integers(2**31))
        chosen = self._order[1][:want_pos] + self._order[0][:want_neg]
        self.main = self._make(chosen)
        self.requested_shots = shots
        self._alt: dict[str, FewShotPrompt] = {}
        self._shot_keys = {normalize_text(texts[i]): i for i in chosen}
        self._chosen = chosen

    def _make(self, chosen: list[int]) -> FewShotPrompt:
        # interleave the classes in a seeded order so that the last example's label is not always the same
        pos = [i for i in chosen if self._labels[i] == 1]
        neg = [i for i in chosen if self._labels[i] == 0]
        r = np.random.default_rng(self._perm_seed)
        first, second = (pos, neg) if r.random() < 0.5 else (neg, pos)
        seq: list[int] = []
        for a, b in zip(first, second):
            seq += [a, b]
        n = min(len(first), len(second))
        seq += first[n:] + second[n:]
        shots = [Shot(self._texts[i], self._labels[i], self._rows[i]) for i in seq]
        return build_prompt(self.spec, shots)

    @property
    def shot_rows(self) -> list[Any]:
        return [s.row for s in self.main.shots]

    def prompt_for(self, text: str) -> FewShotPrompt:
        key = normalize_text(text)
        i = self._shot_keys.get(key)
        if i is None:
            return self.main
        if key not in self._alt:
            c = self._labels[i]
            spare = [j for j in self._order[c] if j not in self._chosen]
            chosen = [j for j in self._chosen if j != i] + spare[:1]
            self._alt[key] = self._make(chosen)
        return self._alt[key]
