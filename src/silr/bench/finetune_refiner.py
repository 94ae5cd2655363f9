"""The refiner's full default path in the fine-tuning track (issue 15): ``SelfIterativeRefiner`` with its hand-back
(paired selection, stack of the LLM score with the refined score) run once with the frozen head and once with
:class:`silr.finetune.FineTuneLearner`, plus the suite's baselines, all on the same encoder (all-MiniLM-L6-v2)
and the same inputs as :mod:`silr.bench.finetune_track`.

Methods added to the track (one runner each, same signature as the track's):

* ``silr_frozen``  the suite's ``silr`` (:func:`silr.bench.methods.run_silr`, ``BENCH_SILR``) on frozen MiniLM
                   features, the LLM score as the stack's evidence;
* ``silr_ftr``     the same refiner with ``learner=FineTuneLearner(**FT_DEFAULT)``, ``supervised_weight`` w and
                   at most ``rounds`` rounds (texts as ``X``; with texts the refiner has no labeled-row probe);
* ``lr_balanced``, ``cleanlab``, ``lr_50`` the suite's baselines on frozen MiniLM features + the LLM score column.

Per-round test accuracy is recorded for both refiners; ``silr_ftr`` also stores its per-round scores (corpus and
test) in ``<dataset>__seed<k>__silr_ftr.npz`` beside the run's JSON, for the post-hoc analyses of
``benchmarks/finetune_report.py`` (round ensembles, stacks), which read gold only to score.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["SUITE_METHODS", "frozen_inputs", "m_suite", "m_silr_ftr"]

SUITE_METHODS = ("silr_frozen", "lr_balanced", "cleanlab", "lr_50")
_SUITE_NAME = {"silr_frozen": "silr"}


def frozen_inputs(inp: dict, seed: int, *, texts: bool = False):
    """:class:`silr.bench.methods.Inputs` of one track cell: the track's frozen features (or the texts), the LLM's
    labels and scores, the labeled rows."""
    from silr.bench.methods import Inputs

    if texts:
        Xc, Xt = inp["texts"], inp["test_texts"]
    else:
        from silr.bench.finetune_track import track_features

        Xc, Xt = track_features(inp)
    return Inputs(Xc, Xt, inp["s"].astype(np.int8), inp["s_test"].astype(np.int8), inp["lab"], inp["y"], inp["yt"],
                  np.asarray(inp["llm_score"], np.float64), np.asarray(inp["llm_score_test"], np.float64), True, seed,
                  {})


def m_suite(name: str):
    """The suite's method ``name`` (``silr_frozen`` = the suite's ``silr`` with ``BENCH_SILR``) on this cell."""

    def run(inp, *, seed, **_):
        from silr.bench.methods import run_method
        from silr.bench.runner import BENCH_SILR

        fi = frozen_inputs(inp, seed)
        fi.silr_params = dict(BENCH_SILR)
        r = run_method(_SUITE_NAME.get(name, name), fi)
        if r.error:
            raise RuntimeError(r.error)
        return {"corpus_pred": r.corpus_pred, "test_pred": r.test_pred, "rounds": r.rounds, "info": r.info}

    return run


def m_silr_ftr(inp, *, seed, params, progress, rounds: int = 2, scores_path: Path | None = None, **_):
    """The refiner's default path with the fine-tuned learner (see the module docstring)."""
    from silr.bench.finetune_track import FT_DEFAULT
    from silr.bench.methods import _source, fit_refiner
    from silr.finetune import FineTuneLearner
    from silr.refine import RefinementError, SelfIterativeRefiner

    p = {**FT_DEFAULT, **params.get("silr_ftr", {})}
    w = float(p.pop("w", 0.3))
    n_rounds = int(p.pop("rounds", rounds))
    y, yt, lab = inp["y"], inp["yt"], inp["lab"]
    model = SelfIterativeRefiner(seed=seed, rounds=n_rounds, supervised_weight=w,
                                 learner=FineTuneLearner(progress=progress, **p))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_refiner(model, inp["texts"], inp["s"], lab, y[lab], llm_score=inp["llm_score"])
    except RefinementError as e:
        return {"corpus_pred": inp["s"], "test_pred": inp["s_test"], "rounds": [],
                "info": {"refused": str(e), "final_source": "llm", "w": w, "params": p}}
    source = _source(model)
    ev_test = np.asarray(inp["llm_score_test"], np.float64)
    test_pred = inp["s_test"] if source == "llm" else np.asarray(model.predict(inp["test_texts"], llm_score=ev_test))
    g_test = [np.asarray(lr.decision_function(inp["test_texts"]), np.float64) / sc
              for lr, sc in zip(model.learners_, model.scales_)]
    recs, z = [], None
    for r in range(model.n_rounds_ + 1):
        rec = {"round": r, "corpus_acc": float(np.mean(model.labels_[r] == y))}
        pr = model.priors_[r]
        rec.update({"pi": pr.pi, "theta_p": pr.theta_p, "theta_n": pr.theta_n, "est_accuracy": pr.accuracy})
        if r >= 1 and r - 1 < len(g_test):
            g = g_test[r - 1]
            z = g if z is None else z + g
            rec["test_acc"] = float(np.mean(((z / r) > 0) == yt))  # the aggregated (running-mean) score, as relabelled
            rec["test_acc_round_alone"] = float(np.mean((g > 0) == yt))
            L = model.learners_[r - 1]
            rr = model.rounds_[r]
            rec.update({"best_epoch": rr.get("best_epoch", getattr(L, "best_epoch_", None)),
                        "n_changed": rr.get("n_changed"), "rejected": bool(rr.get("rejected")),
                        "fit_seconds": round(float(getattr(L, "fit_seconds_", float("nan"))), 1),
                        "fit_cpu_seconds": round(float(getattr(L, "fit_cpu_seconds_", float("nan"))), 1)})
        recs.append(rec)
    stop = getattr(model, "stop_reason_", None)
    info = {"final_round": int(model.final_round_), "predict_round": int(model.predict_round_),
            "n_rounds": int(model.n_rounds_), "stop_reason": str(getattr(stop, "value", stop)),
            "selection": getattr(model, "selection_reason_", None), "final_source": source,
            "stack": getattr(model, "stack_", None), "w": w, "params": p, "learner": "FineTuneLearner"}
    if scores_path is not None:
        from silr.io import atomic_write_bytes

        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, corpus_agg=np.asarray(model.scores_, np.float64),
                            test_raw=np.vstack(g_test) if g_test else np.zeros((0, len(yt))),
                            labels=np.asarray(model.labels_, np.int8), handed_test=np.asarray(test_pred, np.int8),
                            handed_corpus=np.asarray(model.transduction_, np.int8))
        atomic_write_bytes(Path(scores_path), buf.getvalue())
    return {"corpus_pred": model.transduction_, "test_pred": test_pred, "rounds": recs, "info": info}
