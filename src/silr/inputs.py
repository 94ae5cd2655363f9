"""What a refinement run starts from: corpus texts with the LLM's round-0 labels, and the small labeled sample.

Every way into a run builds its :class:`RefineInputs` here: ``silr refine`` from two files
(:func:`load_refine_inputs`), ``silr run`` / ``silr demo`` from the annotated corpus
(:func:`inputs_from_annotation`). The labeled rows' own round-0 labels (and LLM scores) are looked up in the
corpus by text in one place, :func:`labeled_from_corpus`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from silr.io import InputError, clean_texts, parse_binary_labels, parse_scores, read_table

__all__ = ["RefineInputs", "load_refine_inputs", "inputs_from_annotation", "labeled_from_corpus",
           "drop_unlabeled_draws"]


@dataclass
class RefineInputs:
    """Corpus texts with their round-0 labels, and the small labeled sample."""

    texts: list[str]
    pseudo: np.ndarray
    labeled_texts: list[str]
    labeled_y: np.ndarray
    labeled_pseudo: np.ndarray
    notes: list[str] = field(default_factory=list)
    corpus_path: str | None = None
    labeled_path: str | None = None
    llm_score: np.ndarray | None = None
    labeled_llm_score: np.ndarray | None = None
    labeled_rows: np.ndarray | None = None  # corpus rows of the labeled rows, when `silr sample` drew them
    design: object | None = None  # ... and the silr.sampling.SamplingDesign that drew them
    # whether the pseudo-labels cut llm_score at a threshold fitted on the labeled rows (None: not known)
    llm_threshold_fitted: bool | None = None

    def merge_keys(self) -> tuple[list, list]:
        """Keys that match labeled rows to corpus rows in :func:`silr.fit_checks.merge_labeled`: the texts, or the
        corpus row numbers when `silr sample` drew the labeled rows."""
        if self.labeled_rows is None:
            return list(self.texts), list(self.labeled_texts)
        return list(range(len(self.texts))), [int(r) for r in self.labeled_rows]

    def fit_params(self) -> dict:
        """``fit`` keywords for the sampling design (none for a uniform sample) and how the LLM's threshold was
        set (none when not known)."""
        out = {} if self.design is None else {"sample_design": self.design}
        if self.llm_threshold_fitted is not None:
            out["llm_threshold_fitted"] = self.llm_threshold_fitted
        return out


def labeled_from_corpus(
    texts: Sequence[str],
    pseudo: np.ndarray,
    labeled_texts: Sequence[str],
    *,
    score: np.ndarray | None = None,
    what: str = "labeled sample",
    hint: str = "",
) -> tuple[np.ndarray, np.ndarray | None]:
    """The labeled rows' round-0 labels (and LLM scores), taken from the first corpus row with the same text.

    Raises :class:`InputError` naming the labeled rows (spreadsheet lines) whose text is not in the corpus.
    """
    first: dict[str, int] = {}
    first_score: dict[str, float] = {}
    for i, (t, s) in enumerate(zip(texts, pseudo)):
        first.setdefault(t, int(s))
        if score is not None:
            first_score.setdefault(t, float(score[i]))
    missing = [i for i, t in enumerate(labeled_texts) if t not in first]
    if missing:
        rows = ", ".join(str(i + 2) for i in missing[:5])
        raise InputError(
            f"{what}: {len(missing)} of {len(labeled_texts)} rows (lines {rows}{' ...' if len(missing) > 5 else ''}) "
            f"have no pseudo-label: their text is not in the corpus{hint}. Annotate the labeled rows too (`silr "
            "annotate LABELED --labeled LABELED --out FILE` with the corpus's options: their scores are already cached) "
            "and pass that file, or label rows sampled from the corpus (`silr sample`)"
        )
    lp = np.array([first[t] for t in labeled_texts], dtype=np.int8)
    lscore = None if score is None else np.array([first_score[t] for t in labeled_texts], dtype=np.float64)
    return lp, lscore


def _pseudo_from_column(df, path, col, threshold) -> np.ndarray:
    if threshold is None:
        vals = df[col]
        try:
            return parse_binary_labels(vals, what=f"corpus file '{path}'", column=col).astype(np.int8)
        except InputError as e:
            raise InputError(
                f"{e}. If '{col}' holds real-valued scores, pass --threshold to turn them into 0/1 labels"
            ) from None
    scores = parse_scores(df[col], what=f"corpus file '{path}'", column=col)
    return (scores > threshold).astype(np.int8)


def load_refine_inputs(
    corpus: str | os.PathLike,
    labeled: str | os.PathLike,
    *,
    pseudo_col: str,
    text_col: str = "text",
    label_col: str = "label",
    threshold: float | None = None,
    score_col: str | None = None,
) -> RefineInputs:
    """Read and validate the corpus and the labeled sample (CSV, JSONL or Parquet).

    The labeled sample's round-0 labels come from its own ``pseudo_col`` column when it has one,
    otherwise from the corpus rows with the same text. ``score_col`` (optional) names the LLM's real-valued
    score (``llm_score`` from ``silr annotate``), looked up the same way; the final selection then stacks it
    with the refined classifier's score. Every problem raises :class:`InputError` naming
    the file, column or rows.
    """
    cdf = read_table(corpus, required=[text_col, pseudo_col] + ([score_col] if score_col else []), what="corpus")
    texts = clean_texts(cdf[text_col], what=f"corpus file '{corpus}'", column=text_col)
    pseudo = _pseudo_from_column(cdf, corpus, pseudo_col, threshold)
    notes = []
    n_dup = len(texts) - len(set(texts))
    if n_dup:
        notes.append(f"corpus has {n_dup} duplicate texts; each row is kept and labeled")
    if pseudo.min() == pseudo.max():
        raise InputError(
            f"corpus file '{corpus}': every pseudo-label in column '{pseudo_col}' is {int(pseudo[0])}; "
            "the method needs both a pseudo-positive and a pseudo-negative set"
        )
    ldf = read_table(labeled, required=[text_col, label_col], what="labeled sample")
    from silr.sampling.files import drawn_inputs, read_labeled_design

    drawn = read_labeled_design(ldf, labeled, texts, pseudo, text_col=text_col, label_col=label_col, corpus=corpus)
    if drawn is not None:  # a `silr sample` file (a `row` column and FILE.design.json): weighted by its design
        return drawn_inputs(drawn, cdf, corpus, labeled, texts, pseudo, notes, score_col)
    ltexts = clean_texts(ldf[text_col], what=f"labeled file '{labeled}'", column=text_col)
    ly = parse_binary_labels(ldf[label_col], what=f"labeled file '{labeled}'", column=label_col).astype(np.int8)
    if ly.min() == ly.max():
        raise InputError(
            f"labeled file '{labeled}': the labeled sample has one class only (every gold label in "
            f"column '{label_col}' is {int(ly[0])}); the class priors need labeled positives and negatives"
        )
    score = lscore = None
    if score_col:
        score = parse_scores(cdf[score_col], what=f"corpus file '{corpus}'", column=score_col)
    if pseudo_col in ldf.columns:
        lp = _pseudo_from_column(ldf, labeled, pseudo_col, threshold)
        if score_col:
            if score_col not in ldf.columns:
                raise InputError(f"labeled file '{labeled}' has '{pseudo_col}' but no score column '{score_col}'")
            lscore = parse_scores(ldf[score_col], what=f"labeled file '{labeled}'", column=score_col)
    else:
        lp, lscore = labeled_from_corpus(texts, pseudo, ltexts, score=score, what=f"labeled file '{labeled}'",
                                         hint=f" and the file has no '{pseudo_col}' column")
        notes.append(f"labeled rows' pseudo-labels taken from the corpus by text ({len(ltexts)} rows)")
    return RefineInputs(texts, pseudo, ltexts, ly, lp, notes, str(corpus), str(labeled), score, lscore)


def inputs_from_annotation(
    annotated: pd.DataFrame,
    labeled: pd.DataFrame,
    *,
    text_col: str,
    pseudo_col: str,
    use_llm_score: bool,
    corpus_path: str,
    labeled_path: str,
) -> tuple[RefineInputs, np.ndarray]:
    """Inputs from an annotated corpus frame and a labeled frame (columns ``text``, ``label``).

    Rows without a pseudo-label (abstained) are left out; returns the inputs and the mask of the corpus rows
    kept. With ``use_llm_score`` the corpus's ``llm_score`` column is the LLM's real-valued evidence.
    """
    what = f"corpus file '{corpus_path}'"
    texts = clean_texts(annotated[text_col], what=what, column=text_col)
    pseudo = parse_binary_labels(annotated[pseudo_col], what=what, column=pseudo_col, allow_missing=True)
    keep = ~np.isnan(pseudo.astype(float))
    llm_score = annotated["llm_score"].to_numpy(dtype=np.float64) if use_llm_score else None
    lab_texts = clean_texts(labeled["text"], what="labeled sample", column="text")
    kept_texts = [t for t, k in zip(texts, keep) if k]
    kept_pseudo = pseudo[keep].astype(np.int8)
    kept_score = None if llm_score is None else llm_score[keep]
    lp, lscore = labeled_from_corpus(kept_texts, kept_pseudo, lab_texts, score=kept_score, what="labeled sample",
                                     hint=" or the LLM abstained on it")
    inputs = RefineInputs(
        texts=kept_texts,
        pseudo=kept_pseudo,
        labeled_texts=lab_texts,
        labeled_y=labeled["label"].to_numpy().astype(np.int8),
        labeled_pseudo=lp,
        corpus_path=corpus_path,
        labeled_path=labeled_path,
        llm_score=kept_score,
        labeled_llm_score=lscore,
    )
    return inputs, keep


def drop_unlabeled_draws(annotated: pd.DataFrame, labeled: pd.DataFrame, *, text_col: str,
                         has_label: np.ndarray) -> tuple[pd.DataFrame, int]:
    """A labeled sample drawn from the corpus before the LLM labeled it (``silr run`` with ``[labeled]
    sample_from_gold``) without the drawn rows whose text no corpus row with a pseudo-label has (``has_label``: a
    mask over ``annotated``'s rows; the LLM abstained on the others): the run leaves those corpus rows out, and
    there is no labeled file to drop them from. Both the binary and the K-class job call it. Returns the sample and
    the number of rows left out (all of them left in when none has a pseudo-label: the usual error then says so)."""
    texts = clean_texts(annotated[text_col], what="annotated corpus", column=text_col)
    kept = {t for t, k in zip(texts, has_label) if k}
    out = np.array([t not in kept for t in clean_texts(labeled["text"], what="labeled sample", column="text")])
    if not out.any() or out.all():
        return labeled, 0
    return labeled[~out].reset_index(drop=True), int(out.sum())
