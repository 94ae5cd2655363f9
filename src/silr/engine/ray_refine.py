"""``silr refine --engine ray``: features on a Ray actor pool into the memory-mapped store, then the same
:class:`~silr.refine.SelfIterativeRefiner` loop with :class:`~silr.engine.stream_head.StreamingHeadLearner` as
the per-round learner (trained by streaming from the store on the pool; corpus scored shard by shard on the pool).

The loop itself (priors, UU weights and risk, running mean, stack, selection) is the local one: the driver keeps
one number per row and round (labels, scores), never the features. ``work_dir`` holds the store and the round
checkpoints; a rerun with the same inputs resumes from them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from silr.engine import Engine, EngineError
from silr.fit_checks import merge_labeled
from silr.inputs import RefineInputs

__all__ = ["refine_texts_ray", "default_work_dir"]


def default_work_dir(inputs: RefineInputs, backbone_spec: dict, cache_dir=None) -> Path:
    """``<cache>/engine/<hash of the corpus texts and the backbone>``: the store and round checkpoints of a job."""
    import hashlib
    import json

    from silr.cache_keys import default_cache_dir

    h = hashlib.sha256(json.dumps(backbone_spec, sort_keys=True, default=str).encode())
    for t in list(inputs.texts) + ["\x00"] + list(inputs.labeled_texts):
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "engine" / h.hexdigest()[:20]


def refine_texts_ray(inputs: RefineInputs, *, engine: Engine, backbone="minilm", rounds: int = 5, seed: int = 0,
                     progress: bool = True, cache_dir: str | os.PathLike | None = None, on_round=None,
                     work_dir: str | os.PathLike | None = None, **refiner_params):
    """:func:`silr.texts.refine_texts` on the Ray engine (dense backbones and the head, or --finetune under Ray Train)."""
    from sklearn import config_context

    from silr.backbones import Backbone, get_backbone
    from silr.engine.features import compute_features
    from silr.engine.stream_head import StreamingHeadLearner
    from silr.refine import refiner_from_params
    from silr.texts import collect_result

    t0 = time.perf_counter()
    learner = refiner_params.pop("learner", None)
    if getattr(learner, "takes_texts", False):  # --finetune: each round's fine-tuning under Ray Train
        from silr.engine.ray_train import refine_texts_finetune_ray

        return refine_texts_finetune_ray(inputs, engine=engine, learner=learner, backbone=backbone, rounds=rounds,
                                         seed=seed, progress=progress, cache_dir=cache_dir, on_round=on_round,
                                         work_dir=work_dir, **refiner_params)
    if learner is not None:
        raise EngineError("the ray engine trains the head on stored features or fine-tunes (--finetune); "
                          "another learner runs on the local engine")
    if float(refiner_params.get("supervised_weight", 0.0) or 0.0) > 0:
        raise EngineError("the ray engine's head has no --supervised-weight yet; use the local engine")
    bb = backbone if isinstance(backbone, Backbone) else get_backbone(backbone, cache_dir=cache_dir, progress=progress)
    if type(bb).new_learner is not Backbone.new_learner or getattr(bb, "name", "") == "ngram":
        raise EngineError(f"the ray engine stores dense features; backbone {getattr(bb, 'name', bb)!r} is not one "
                          "(use minilm, e5 or st:MODEL_DIR, or the local engine)")
    bb.fit(inputs.texts)
    n, m = len(inputs.texts), len(inputs.labeled_texts)
    # the fit input's layout (corpus rows, then labeled rows that are not corpus rows), from merge_labeled itself
    keys, labeled_keys = inputs.merge_keys()  # by text, or by corpus row for rows drawn by `silr sample`
    _, y_all, y_gold, llm_all = merge_labeled(
        np.zeros((n, 0)), inputs.pseudo, np.zeros((m, 0)), inputs.labeled_y, inputs.labeled_pseudo,
        keys=keys, labeled_keys=labeled_keys, llm_score=inputs.llm_score, llm_score_lab=inputs.labeled_llm_score)
    extra = _appended_rows(inputs, y_all.size - n)
    texts_all = list(inputs.texts) + [inputs.labeled_texts[j] for j in extra]
    work = Path(work_dir) if work_dir else default_work_dir(inputs, bb.spec(), cache_dir)
    dim = int(getattr(bb, "dim", 0)) or int(np.asarray(bb.transform(texts_all[:1])).shape[1])
    store = compute_features(engine, bb, texts_all, work / "features", dim=dim)
    X_all = store.open()
    learner = StreamingHeadLearner(store_path=str(store.path), work_dir=str(work), engine=engine, epochs=20)
    refiner = refiner_from_params(rounds=rounds, seed=seed, learner=learner, **refiner_params)
    # skip a full pass over the store to check finiteness; drop the store's pages the driver reads (the labeled-row
    # probe and the hand-back read every row in chunks) so its resident memory stays bounded, not the store's size
    with config_context(assume_finite=True), _ReleasePages(X_all):
        refiner.fit(X_all, y_all, y_gold=y_gold, llm_score=llm_all, on_round=on_round, **inputs.fit_params())
        result = collect_result(refiner, bb, inputs, X_all[:n], t0, engine={**engine.describe(), "work_dir": str(work)})
    return result


class _ReleasePages:
    """While in the block, drop the memory map's resident pages every ``every`` seconds (they stay in the page
    cache; a read faults them back in)."""

    def __init__(self, mm, every: float = 0.2):
        import threading

        self.mm, self.every = mm, every
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from silr.engine.features import release

        while not self._stop.wait(self.every):
            release(self.mm)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _appended_rows(inputs: RefineInputs, n_extra: int) -> list[int]:
    """Which labeled rows :func:`merge_labeled` appends after the corpus, in its order."""
    if n_extra == 0:
        return []
    m = len(inputs.labeled_texts)
    keys, labeled_keys = inputs.merge_keys()
    X_all, *_ = merge_labeled(
        np.full((len(inputs.texts), 1), -1.0), inputs.pseudo, np.arange(m, dtype=float).reshape(m, 1),
        inputs.labeled_y, inputs.labeled_pseudo, keys=keys, labeled_keys=labeled_keys,
        llm_score=inputs.llm_score, llm_score_lab=inputs.labeled_llm_score)
    return [int(v) for v in np.asarray(X_all)[len(inputs.texts):, 0]]
