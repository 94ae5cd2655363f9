"""K-class annotation against an OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI): one request
per text, the K label words' log-probabilities read from the answer's first position.

The request is the binary annotator's (:class:`silr.annotate.server.OpenAICompatibleAnnotator`: retries,
back-off, time-outs, redirects refused, the key never logged), with the K words named in the system message and
``top_logprobs`` raised to 20 (OpenAI's limit; zero-shot, a word is often off the top 5 at the first position).
At the first answer position that names a label word (a returned token is a prefix of exactly one word; case
variants pooled) each word gets its log-probability; a word missing from the returned list gets the smallest
returned one minus ``missing_margin``; the K values are normalised over the words. A server that returns no
log-probabilities gives the parsed answer instead (the chosen word +1, the others -1, normalised: a label without
confidence); an answer that names no word abstains (NaN scores, no label). Scores are cached per text and word
(``silr.annotate.cache``), so an interrupted run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from silr.annotate.replies import _norm, logsumexp, reply_positions, words_logprobs
from silr.annotate.types import ScoreResult

__all__ = ["parse_kanswer", "server_kclass_scores"]


def parse_kanswer(text: str | None, words: Sequence[str]) -> int | None:
    """The label word a plain answer names (its first word, case and punctuation aside), or None."""
    if not isinstance(text, str):
        return None
    first = next((w for w in text.replace(",", " ").replace(".", " ").split() if w.strip()), "")
    ws = [_norm(w) for w in words]
    f = _norm(first)
    return ws.index(f) if f in ws else None


def _normalise(v: Sequence[float]) -> list[float]:
    z = logsumexp(list(v))
    return [x - z for x in v]


def server_kclass_scores(annotator, texts: Sequence[str], prompt, *, cache=None,
                         on_batch: Callable | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(log-probabilities (n, K) normalised over the words (NaN rows: abstained), truncated flags (n,), counts by
    kind)`` for ``texts`` with ``prompt`` (a :class:`~silr.multiclass.annotate.KPrompt`) from ``annotator`` (an
    :class:`~silr.annotate.server.OpenAICompatibleAnnotator`); ``cache`` a :class:`~silr.annotate.cache.ScoreCache`."""
    from silr.annotate.cache import text_key

    words = list(prompt.label_words)
    K = len(words)
    annotator.top_logprobs = max(annotator.top_logprobs, 20)
    phash = hashlib.sha256(json.dumps({"kclass": prompt.to_dict(), "settings": annotator.settings_id},
                                      sort_keys=True).encode()).hexdigest()[:16]
    jobs = []
    for t in texts:
        clipped, cut = prompt.clip(t)
        jobs.append((prompt.prefix + prompt.suffix(clipped), cut))
    out = np.full((len(texts), K), np.nan)
    cut = np.array([c for _, c in jobs], dtype=bool)
    counts = {"logprob_scores": 0, "answer_scores": 0, "abstained": 0, "cached": 0}
    todo = []
    for i, (ptext, _) in enumerate(jobs):
        keys = [f"{text_key(ptext)}#{j}" for j in range(K)]
        hit = cache.get_many(annotator.model_id, phash, keys) if cache is not None else {}
        if len(hit) == K:
            counts["cached"] += 1
            if not any(hit[k].abstained for k in keys):
                out[i] = [hit[k].score for k in keys]
        else:
            todo.append(i)

    def one(i: int):
        data = annotator.request_words(jobs[i][0], words)
        choice = data["choices"][0] if isinstance(data.get("choices"), list) and data["choices"] else {}
        choice = choice if isinstance(choice, dict) else {}
        lp = words_logprobs(reply_positions(choice), words, annotator.missing_margin)
        if lp is not None:
            return "logprob_scores", _normalise(lp)
        text = choice.get("text")
        if text is None and isinstance(choice.get("message"), dict):
            text = choice["message"].get("content")
        j = parse_kanswer(text, words)
        if j is None:
            return "abstained", None
        return "answer_scores", _normalise([1.0 if k == j else -1.0 for k in range(K)])

    done = len(texts) - len(todo)
    with ThreadPoolExecutor(max_workers=annotator.concurrency, thread_name_prefix="silr-kannotate") as pool:
        for i, (kind, v) in zip(todo, pool.map(one, todo)):
            counts[kind] += 1
            if v is not None:
                out[i] = v
            if cache is not None:
                key = text_key(jobs[i][0])
                cache.put_many(annotator.model_id, phash,
                               [(f"{key}#{j}", ScoreResult(None if v is None else float(v[j]), v is None,
                                                           bool(jobs[i][1]))) for j in range(K)])
            done += 1
            if on_batch and (done % 50 == 0 or done == len(texts)):
                on_batch(done, len(texts))
    return out, cut, counts
