"""The replies of OpenAI-compatible servers, read: log-probabilities of the label words in either API's format, a
strictly parsed answer, and the ``Retry-After`` header. Pure functions over the decoded JSON."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

__all__ = ["parse_answer", "reply_positions", "words_logprobs", "logprob_score", "parse_retry_after"]

_PUNCT = " \t\r\n.,;:!?\"'`*()[]{}<>"


def _norm(s: str) -> str:
    return s.strip(_PUNCT).lower()


def parse_answer(text: str | None, positive: str, negative: str) -> int | None:
    """1 / 0 when the answer's first line is exactly one label word (case and punctuation aside), else None."""
    if not text:
        return None
    first = text.strip().split("\n", 1)[0]
    a = _norm(first)
    p, n = _norm(positive), _norm(negative)
    if a == p and a != n:
        return 1
    if a == n and a != p:
        return 0
    return None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def reply_positions(choice: dict) -> list[tuple[str, list[tuple[str, float]]]]:
    """[(generated token, [(candidate token, logprob), ...]), ...] for the answer, in either API format."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return []
    out = []
    if isinstance(lp.get("content"), list):  # chat format
        for item in lp["content"]:
            if not isinstance(item, dict):
                continue
            tops = [(str(t.get("token", "")), float(t["logprob"])) for t in item.get("top_logprobs") or []
                    if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
            if not tops and isinstance(item.get("logprob"), (int, float)):
                tops = [(str(item.get("token", "")), float(item["logprob"]))]
            out.append((str(item.get("token", "")), tops))
    elif isinstance(lp.get("top_logprobs"), list):  # legacy completions format
        toks = lp.get("tokens") or []
        for i, d in enumerate(lp["top_logprobs"]):
            if not isinstance(d, dict):
                continue
            tops = [(str(k), float(v)) for k, v in d.items() if isinstance(v, (int, float))]
            out.append((str(toks[i]) if i < len(toks) else "", tops))
    return out


def words_logprobs(positions: list, words, missing_margin: float = 1.0) -> list[float] | None:
    """Each label word's log-probability at the first answer position that names one of them (a returned token is
    a prefix of exactly one word; case variants pooled), not normalised; a word missing from the returned top list
    gets the smallest returned log-probability minus ``missing_margin``. None when the answer names no word."""
    ws = [_norm(w) for w in words]

    def which(tok: str) -> int | None:
        t = _norm(tok)
        hit = [j for j, w in enumerate(ws) if t and w.startswith(t)]
        return hit[0] if len(hit) == 1 else None

    for gen, tops in positions:
        if not tops:
            continue
        per: list[list[float]] = [[] for _ in ws]
        for t, v in tops:
            j = which(t)
            if j is not None and math.isfinite(v):
                per[j].append(v)
        if any(per):
            floor = min(v for _, v in tops if math.isfinite(v)) - missing_margin
            return [logsumexp(p) if p else floor for p in per]
        if _norm(gen):  # a real (non-blank) token that names no word: no label at this answer
            return None
    return None


def logprob_score(positions: list, positive: str, negative: str, missing_margin: float = 1.0) -> float | None:
    """logp(positive word) - logp(negative word) at the first answer position that names either
    (:func:`words_logprobs` with the two words). None when the answer names neither word."""
    lp = words_logprobs(positions, (positive, negative), missing_margin)
    return None if lp is None else lp[0] - lp[1]


def logsumexp(v: list[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))
