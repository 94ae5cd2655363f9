"""Round 0 of the method: the LLM scores every text, a threshold turns scores into pseudo-labels."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .cache import CACHE_FILE, ScoreCache, text_key
from .calibrate import choose_threshold
from .prompts import FewShotPrompt, PromptSpec, ShotPlan, load_prompt
from .types import Annotator, ScoreResult

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("llm_score", "pseudo_label", "abstained")


def _open_cache(cache: ScoreCache | str | Path | None) -> tuple[ScoreCache, bool]:
    if isinstance(cache, ScoreCache):
        return cache, False
    if cache is None:
        return ScoreCache(None), True
    p = Path(cache)
    if p.is_dir() or not p.suffix:
        p = p / CACHE_FILE
    return ScoreCache(p), True


def _labeled_columns(labeled: pd.DataFrame, text_col: str, label_col: str) -> tuple[str, str]:
    from silr.io import InputError

    tcol = text_col if text_col in labeled.columns else ("text" if "text" in labeled.columns else None)
    if tcol is None:
        raise InputError(f"labeled sample has no text column {text_col!r}; columns: {list(labeled.columns)}")
    if label_col not in labeled.columns:
        raise InputError(f"labeled sample has no label column {label_col!r}; columns: {list(labeled.columns)}")
    return tcol, label_col


def shot_plan(spec: PromptSpec, labeled: pd.DataFrame | None, text_col: str, *, shots: int = 4, seed: int = 0,
              label_col: str = "label") -> tuple[ShotPlan, list[str], np.ndarray]:
    """The few-shot plan :func:`annotate_frame` scores with (and the labeled texts): the same arguments give the
    same prompts, so other components (the ``llm`` backbone) can reproduce them. Returns
    ``(plan, labeled texts, labeled gold labels)``."""
    from silr.io import clean_texts, parse_binary_labels

    lab_texts: list[str] = []
    lab_y = np.zeros(0, dtype=int)
    lab_rows: list[Any] = []
    if labeled is not None and len(labeled):
        tcol, lcol = _labeled_columns(labeled, text_col, label_col)
        lab_texts = clean_texts(labeled[tcol], what="labeled sample", column=tcol)
        lab_y = parse_binary_labels(labeled[lcol], what="labeled sample", column=lcol).astype(int)
        lab_rows = list(labeled.index)
    plan = ShotPlan(spec, lab_texts, lab_y, rows=lab_rows, shots=shots if len(lab_texts) else 0, seed=seed)
    return plan, lab_texts, lab_y


def group_by_prompt(plan: ShotPlan, texts: Sequence[str]) -> dict[str, tuple[FewShotPrompt, list[str]]]:
    """The distinct ``texts`` grouped by the prompt each is scored with (a shot is never its own example)."""
    groups: dict[str, tuple[FewShotPrompt, list[str]]] = {}
    for t in dict.fromkeys(texts):
        p = plan.prompt_for(t)
        groups.setdefault(p.hash, (p, []))[1].append(t)
    return groups


def take_cached(stores: Sequence[ScoreCache], model_id: str, phash: str, texts: list[str],
                results: dict[str, ScoreResult]) -> list[str]:
    """Put the scores of ``texts`` already in ``stores`` (the first store holding a text wins) into ``results``;
    returns the texts still to score, in order."""
    keys = [text_key(t) for t in texts]
    hit: dict[str, ScoreResult] = {}
    for store in stores:
        hit = {**store.get_many(model_id, phash, keys), **hit}
    missing = []
    for t, k in zip(texts, keys):
        r = hit.get(k)
        if r is None:
            missing.append(t)
        else:
            results[t] = r
    return missing


def score_and_commit(annotator: Annotator, prompt: FewShotPrompt, phash: str, texts: list[str], store: ScoreCache,
                     results: dict[str, ScoreResult], *, advance=None) -> int:
    """Score ``texts`` under ``prompt``, committing each score to ``store`` as it comes (an interrupted run or a
    retried shard skips it) and adding it to ``results``; returns how many were scored."""
    n = 0
    for i, r in annotator.score(texts, prompt):
        t = texts[i]
        if t in results:  # never expected: an annotator yielding an index twice
            continue
        store.put(annotator.model_id, phash, text_key(t), r)
        results[t] = r
        n += 1
        if advance is not None:
            advance(1)
    return n


def score_values(results: dict[str, ScoreResult], texts: Sequence[str]) -> np.ndarray:
    """The score of each text as a float, NaN where the model abstained."""
    return np.array([np.nan if results[t].abstained or results[t].score is None else float(results[t].score)
                     for t in texts], dtype=float)


def annotate_frame(
    df: pd.DataFrame,
    text_col: str,
    annotator: Annotator,
    prompt: PromptSpec | str | Path,
    labeled: pd.DataFrame | None = None,
    shots: int = 4,
    threshold: str | float | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    cache: ScoreCache | str | Path | None = None,
    label_col: str = "label",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every text of ``df[text_col]`` with ``annotator`` and add ``llm_score``, ``pseudo_label``, ``abstained``.

    * ``prompt``: a :class:`PromptSpec`, a prompt file or a built-in name.  Few-shot examples (``shots``, balanced)
      come only from ``labeled`` (columns ``text_col`` or ``text``, and ``label_col``); a labeled text that is a
      shot is scored with another shot in its place.  The labeled texts are scored too (through the same cache)
      so that ``threshold`` (see :func:`silr.annotate.calibrate.choose_threshold`) can be fitted on them.
    * ``limit`` keeps the first N rows, ``sample`` N random rows (by ``seed``); the output holds those rows only.
    * ``cache``: a :class:`ScoreCache`, a file or folder path, or None (in memory).  Each text is scored at most
      once per (model, prompt) — duplicates in the input and texts already in the cache cost nothing — and every
      score is committed as it is produced, so an interrupted run resumes where it stopped.

    Returns ``(df_out, record)``; ``pseudo_label`` is a nullable Int8 (NA when abstained), ``llm_score`` is NaN
    when abstained.  The record holds the model, prompt, shots, threshold choice and counts.
    """
    from silr.io import InputError, clean_texts
    from silr.progress import progress_bar

    t_start = time.time()
    if text_col not in df.columns:
        raise InputError(f"input has no text column {text_col!r}; columns: {', '.join(map(str, df.columns))}")
    spec = prompt if isinstance(prompt, PromptSpec) else load_prompt(prompt)
    n_in = len(df)
    sel = df
    if sample is not None:
        if sample < 1:
            raise ValueError("sample must be >= 1")
        if sample < len(sel):
            pick = np.sort(np.random.default_rng(seed).choice(len(sel), size=sample, replace=False))
            sel = sel.iloc[pick]
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        sel = sel.iloc[:limit]
    texts = clean_texts(sel[text_col], what="input", column=text_col)

    plan, lab_texts, lab_y = shot_plan(spec, labeled, text_col, shots=shots, seed=seed, label_col=label_col)
    if shots and not len(lab_texts):
        log.warning("no labeled sample: zero-shot prompt (few-shot examples come only from labeled rows)")

    uniq = list(dict.fromkeys(texts + lab_texts))
    groups = group_by_prompt(plan, uniq)

    store, owned = _open_cache(cache)
    results: dict[str, ScoreResult] = {}
    n_cached = n_scored = 0
    model_id = annotator.model_id
    try:
        todo: list[tuple[FewShotPrompt, str, list[str]]] = []
        for p, ts in groups.values():
            phash = p.with_hash(annotator.settings_id)
            missing = take_cached([store], model_id, phash, ts, results)
            n_cached += len(ts) - len(missing)
            if missing:
                todo.append((p, phash, missing))
        total = sum(len(m) for _, _, m in todo)
        if n_cached and total:
            log.warning("resuming: %d of %d texts are already scored in the cache (same model and prompt); "
                        "scoring the other %d", n_cached, n_cached + total, total)
        elif n_cached:
            log.info("all %d texts are already scored in the cache (same model and prompt)", n_cached)
        status = getattr(annotator, "status", None)
        with progress_bar(f"Scoring texts with {getattr(annotator, 'name', None) or model_id}", total,
                          enabled=progress and total > 0, status=status if callable(status) else None) as advance:
            for p, phash, missing in todo:
                n_scored += score_and_commit(annotator, p, phash, missing, store, results, advance=advance)
    finally:
        if owned:
            store.close()

    corpus_scores = score_values(results, texts)
    lab_scores = score_values(results, lab_texts) if lab_texts else None
    thr, thr_rec = choose_threshold(threshold, corpus_scores, lab_scores, lab_y if lab_texts else None)

    abst = np.isnan(corpus_scores)
    out = sel.copy()
    clash = [c for c in OUTPUT_COLUMNS if c in out.columns]
    if clash:
        log.warning("input already has column(s) %s: they are replaced", ", ".join(clash))
    out["llm_score"] = corpus_scores
    out["pseudo_label"] = pd.array(np.where(abst, 0, corpus_scores > thr).astype(int), dtype="Int8")
    out.loc[abst, "pseudo_label"] = pd.NA
    out["abstained"] = abst

    n_trunc = sum(results[t].truncated for t in uniq)
    if n_trunc:
        log.warning("%d text(s) were truncated to fit the prompt (max_text_chars=%d%s)", n_trunc,
                    spec.max_text_chars,
                    f", max_text_tokens={annotator.max_text_tokens}" if hasattr(annotator, "max_text_tokens") else "")
    n_abst = int(abst.sum())
    if n_abst:
        log.warning("the model abstained on %d of %d rows (answer was neither label word); their pseudo_label is "
                    "empty", n_abst, len(texts))
    describe = annotator.describe() if hasattr(annotator, "describe") else {"model_id": model_id}
    record: dict[str, Any] = {
        "model": describe,
        "prompt": {
            **spec.to_dict(),
            "hash": plan.main.hash,
            "shots_requested": shots,
            "shots": [{"row": _jsonable(s.row), "label": s.label} for s in plan.main.shots],
            "prefix": plan.main.prefix,
            "seed": seed,
        },
        "threshold": thr_rec,
        "counts": {
            "rows_in": n_in,
            "rows": len(texts),
            "unique_texts": len(uniq),
            "labeled": len(lab_texts),
            "scored": n_scored,
            "cached": n_cached,
            "abstained": n_abst,
            "truncated": int(n_trunc),
            "positive": int((out["pseudo_label"] == 1).sum()),
            "negative": int((out["pseudo_label"] == 0).sum()),
        },
        "selection": {"limit": limit, "sample": sample},
        "seconds": round(time.time() - t_start, 3),
    }
    if hasattr(annotator, "stats"):
        record["server_stats"] = dict(annotator.stats)
    return out, record


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)
