"""Refining texts: featurize them with a backbone, run the refiner, collect labels and a summary (``rounds.json``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from silr import __version__
from silr.inputs import RefineInputs
from silr.refine import SelfIterativeRefiner, refiner_from_params
from silr.fit_checks import merge_labeled

__all__ = ["RefineResult", "refine_texts", "collect_result"]


@dataclass
class RefineResult:
    refiner: SelfIterativeRefiner
    backbone: object
    inputs: RefineInputs
    labels: pd.DataFrame
    summary: dict
    seconds: float


def refine_texts(
    inputs: RefineInputs,
    *,
    backbone="minilm",
    rounds: int = 5,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    on_round: Callable[[dict], None] | None = None,
    **refiner_params,
) -> RefineResult:
    """The one-call function over texts: featurize with ``backbone``, refine, and collect the results.

    Examples
    --------
    >>> inputs = RefineInputs(texts, llm_labels, labeled_texts, gold, labeled_llm_labels)  # doctest: +SKIP
    >>> result = refine_texts(inputs, backbone="minilm", rounds=5)                         # doctest: +SKIP
    >>> result.labels["final"]                                                              # doctest: +SKIP
    """
    from silr.backbones import Backbone, get_backbone

    t0 = time.perf_counter()
    bb = backbone if isinstance(backbone, Backbone) else get_backbone(backbone, cache_dir=cache_dir, progress=progress)
    # the learner given (e.g. a fine-tuning learner on texts), else the backbone's own (LoRA), else the head
    learner = refiner_params.pop("learner", None)
    if getattr(learner, "takes_texts", False):  # a fine-tuning learner reads the texts: no features needed
        X = np.asarray(list(inputs.texts), dtype=object)
        X_lab = np.asarray(list(inputs.labeled_texts), dtype=object)
    else:
        bb.fit(inputs.texts)
        X = bb.transform(inputs.texts)
        X_lab = bb.transform(inputs.labeled_texts)
    if learner is None and type(bb).new_learner is not Backbone.new_learner:
        learner = bb.new_learner(1)
    refiner = refiner_from_params(rounds=rounds, seed=seed, learner=learner, **refiner_params)
    # one fit input: the labeled rows are corpus rows (matched by text) or appended after the corpus
    keys, labeled_keys = inputs.merge_keys()  # rows drawn by `silr sample` are matched by row number, not by text
    X_all, y_all, y_gold, llm_all = merge_labeled(
        X, inputs.pseudo, X_lab, inputs.labeled_y, inputs.labeled_pseudo, keys=keys, labeled_keys=labeled_keys,
        llm_score=inputs.llm_score, llm_score_lab=inputs.labeled_llm_score)
    refiner.fit(X_all, y_all, y_gold=y_gold, llm_score=llm_all, on_round=on_round, **inputs.fit_params())
    return collect_result(refiner, bb, inputs, X, t0)


def collect_result(refiner: SelfIterativeRefiner, bb, inputs: RefineInputs, X, t0: float, *,
                   engine: dict | None = None) -> RefineResult:
    """The labels (one column per round, ``final``, ``score``) and the summary (``rounds.json``) of a fitted
    refiner whose first ``len(inputs.texts)`` rows are the corpus (``X``: the corpus features); ``engine`` is
    recorded as the summary's ``engine`` (default: the local engine)."""
    n = len(inputs.texts)
    cols = {f"round_{r}": refiner.labels_[r][:n].astype(int) for r in range(refiner.n_rounds_ + 1)}
    cols["final"] = refiner.transduction_[:n].astype(int)
    if refiner.predict_round_ == 0 and refiner.final_source_ != "probe":
        # every refinement round was rejected and round 0's labels were handed back: there is no classifier to
        # score the corpus with, so the score is the handed-back label as +1/-1 (never NaN)
        cols["score"] = np.where(refiner.transduction_[:n] == 1, 1.0, -1.0)
        inputs.notes.append("no refinement round was kept: the score column is the handed-back label as +1/-1, "
                            "and the saved model has no classifier for `silr predict`")
    else:
        cols["score"] = refiner.decision_function(X, llm_score=inputs.llm_score).astype(float)
    labels = pd.DataFrame(cols)
    summary = {
        "silr_version": __version__,
        "backbone": bb.spec(),
        "n_corpus": len(inputs.texts),
        "n_labeled": len(inputs.labeled_texts),
        "inputs": {"corpus": inputs.corpus_path, "labeled": inputs.labeled_path},
        "notes": inputs.notes,
        **refiner.summary(),
    }
    # which learner ran each round (rounds.json): the head on the backbone's features, or a fine-tuned encoder
    lt = refiner.learner
    summary["learner"] = {
        "kind": "HeadLearner (default)" if lt is None else type(lt).__name__,
        "takes_texts": bool(getattr(lt, "takes_texts", False)),
        "supervised_weight": refiner.supervised_weight,
        "input": "texts (encoder fine-tuned end to end each round)" if getattr(lt, "takes_texts", False)
        else f"features of backbone {bb.spec().get('name')}",
        # why this learner: the default stays the frozen head until the fine-tuned learner wins the benchmark
        "why": ("default: the head on frozen features; the fine-tuned learner did not beat it on the benchmark's "
                "real-LLM cells (benchmarks/FINETUNE.md)") if lt is None
        else "asked for (--finetune / [refine] finetune = true / learner=)" if getattr(lt, "takes_texts", False)
        else "the backbone's own learner",
    }
    summary["engine"] = engine or {"kind": "local"}
    summary["seconds"] = time.perf_counter() - t0
    return RefineResult(refiner, bb, inputs, labels, summary, summary["seconds"])
