"""``silr run`` for K > 2 classes: annotate with K label words (or read the pseudo-labels), refine, evaluate when
gold is given, report: one output folder, as the binary job (:func:`silr.job.run_job` dispatches here)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from silr.io import InputError

__all__ = ["kclass_job_spec", "run_kclass_job"]


def kclass_job_spec(cfg, corpus: pd.DataFrame, labeled: pd.DataFrame):
    """``(is_kclass, K-class prompt or None)`` for a job: 3+ label words in ``[annotator]`` (or a prompt file with
    3+ words) when it annotates; 3+ values in ``[data] pseudo_col`` or in the labeled sample when it does not."""
    from silr.multiclass.files import kclass_prompt, kclass_pseudo_classes

    d, a = cfg.data, cfg.annotator
    if d.pseudo_col:
        return kclass_pseudo_classes(corpus[d.pseudo_col], labeled["label"]) is not None, None
    prompt = a.prompt
    if prompt and not Path(prompt).is_absolute() and (Path(cfg.base_dir) / prompt).is_file():
        prompt = str(Path(cfg.base_dir) / prompt)
    spec = kclass_prompt(prompt, a.label_words or None, a.instruction or None)
    return spec is not None, spec


def run_kclass_job(cfg, out: Path, corpus: pd.DataFrame, labeled: pd.DataFrame, spec, *, corpus_path: Path,
                   labeled_what: str, progress: bool = True, echo: Callable[[str], None] = print,
                   on_round: Callable | None = None, labeled_without_gold: int = 0) -> dict:
    """The K-class job into the (empty) folder ``out``; returns the summary (``evaluation`` when gold is given).
    ``labeled`` has columns ``text`` and ``label``; gold (``[data] gold_col``) is read only by the evaluation."""
    from silr.cache_keys import default_cache_dir
    from silr.io import atomic_write_text, json_default, write_table
    from silr.inputs import drop_unlabeled_draws
    from silr.multiclass.files import (LOGP_PREFIX, annotate_kclass, class_names, evaluate_kclass, kept_rows,
                                       labeled_only_note, left_out_note, print_kround, refine_kclass)

    d, a, r = cfg.data, cfg.annotator, cfg.refine
    for bad, key in ((r.finetune or None, "[refine] finetune"), (r.risk != "robust_uu" or None, "[refine] risk"),
                     (r.later_risk != "uu" or None, "[refine] later_risk"), (d.test or None, "[data] test"),
                     (r.backbone == "llm" or None, "[refine] backbone = \"llm\"")):
        if bad is not None:
            raise InputError(f"config: {key} is for two classes; this job has K > 2 classes (K-class path)")
    if spec is not None and d.score_col:
        raise InputError("config: [data] score_col goes with pseudo_col (scores already in the corpus); this job "
                         "annotates, and its annotation writes the per-class scores itself")
    if spec is not None and cfg.labeled.file:  # the labeled file's own problems, before a long annotation
        from silr.io import clean_texts

        gold = class_names(labeled["label"])
        if (gold == "").any():
            raise InputError(f"labeled file '{labeled_what}': column '{cfg.labeled.label_col}' is empty on row "
                             f"{int(np.flatnonzero(gold == '')[0]) + 2}")
        in_corpus = set(clean_texts(corpus[d.text_col], what=f"corpus file '{corpus_path}'", column=d.text_col))
        ltexts = clean_texts(labeled["text"], what=f"labeled file '{labeled_what}'", column=d.text_col)
        out_j = [j for j, t in enumerate(ltexts) if t not in in_corpus]
        if out_j:
            raise InputError(f"labeled file '{labeled_what}': row {out_j[0] + 2} has a text that is not in the corpus; "
                             "K-class refinement needs each labeled row's LLM label (add it to the corpus)")
    t0 = time.perf_counter()
    annotation = None
    if spec is not None:
        from silr.multiclass.shots import shots_per_class

        per = shots_per_class(a.shots, spec.K)
        echo(f"annotating {len(corpus)} texts with {a.model} ({spec.K} label words: {', '.join(spec.label_words)}; "
             + (f"{per} example(s) per class from the labeled sample" if per else "zero-shot") + ") ...")
        annotated, annotation = annotate_kclass(
            corpus.drop(columns=[c for c in (d.gold_col,) if c]), d.text_col, spec, model=a.model,
            what=f"corpus file '{corpus_path}'", cache_dir=default_cache_dir(), batch_size=a.batch_size,
            server={"base_url": a.base_url or None, "api": a.api, "concurrency": a.concurrency, "timeout": a.timeout}
            if str(a.model).startswith("openai:") else None,
            shots_from=(labeled["text"].astype(str).tolist(), labeled["label"].astype(str).tolist(), labeled_what),
            shots=a.shots, seed=0)
        for note in annotation.get("shots", {}).get("notes", []):
            echo(f"note: {note}")
        pseudo_col, prefix = "llm_label", LOGP_PREFIX
        write_table(annotated, out / "annotated.csv")
        atomic_write_text(out / "annotation.json", json.dumps(annotation, indent=2, default=str))
    else:
        annotated, pseudo_col, prefix = corpus, d.pseudo_col, (d.score_col or None)
    n_lab_out = 0
    if not cfg.labeled.file and {pseudo_col, d.text_col} <= set(annotated.columns):
        # sample_from_gold drew its rows before the LLM labeled them: a drawn row it abstained on (no kept duplicate)
        # leaves the sample, as the run leaves it out (there is no labeled file to drop it from)
        n_drawn = len(labeled)
        labeled, n_lab_out = drop_unlabeled_draws(annotated, labeled, text_col=d.text_col,
                                                  has_label=class_names(annotated[pseudo_col]) != "")
        if n_lab_out:
            echo(f"note: {n_lab_out} of the {n_drawn} rows drawn from gold for the labeled sample have no LLM "
                 "label (abstained): left out of the labeled sample")
    ldf = labeled.rename(columns={"text": d.text_col}) if d.text_col != "text" else labeled
    summary = refine_kclass(annotated, ldf, out, pseudo_col=pseudo_col, text_col=d.text_col, label_col="label",
                            score_prefix=prefix, rounds=r.rounds, seed=r.seed, backbone=r.backbone,
                            progress=progress, corpus=str(corpus_path), labeled=labeled_what,
                            on_round=print_kround if on_round is not None else None,  # K-class round lines
                            keep_files=("annotated.csv", "annotation.json") if spec is not None else ())
    summary["config"] = cfg.to_dict()
    if n_lab_out:
        summary["labeled_rows_left_out"] = n_lab_out
    if labeled_without_gold:  # sample_from_gold rows with an empty gold cell (run_job left them out)
        summary["labeled_rows_without_gold"] = labeled_without_gold
    for note in (left_out_note(summary), labeled_only_note(summary)):
        if note:
            echo(note)
    if annotation is not None:
        summary["annotation"] = annotation
    atomic_write_text(out / "rounds.json", json.dumps(summary, indent=1, default=json_default))
    # --- evaluation: a separate step that reads gold only now, after the run is written ---
    if d.gold_col:
        gold_file = out / "gold.csv"
        keep = kept_rows(summary, len(corpus))
        # class names as the run reads them (integer codes with empty cells: '1', not the float read's '1.0')
        write_table(pd.DataFrame({"label": class_names(corpus[d.gold_col])[keep]}), gold_file)
        summary["evaluation"] = evaluate_kclass(out, gold_file)
    summary["total_seconds"] = time.perf_counter() - t0
    return summary
