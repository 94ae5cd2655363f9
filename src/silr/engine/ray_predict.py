"""``silr predict --engine ray``: the saved run scores the input's texts shard by shard on a Ray actor pool (each
actor loads the model once)."""

from __future__ import annotations

import base64
import numpy as np
import pandas as pd

from silr.engine.shards import run_pool

__all__ = ["predict_on_ray"]


class _PredictWorker:
    def __init__(self, run_dir: str):
        import torch

        torch.set_num_threads(1)
        self.run_dir = run_dir

    def __call__(self, item: dict) -> dict:
        from silr.run_folder import predict_texts

        llm = np.asarray(item["llm_score"], dtype=np.float64) if item.get("llm_score") is not None else None
        pred = predict_texts(self.run_dir, item["texts"], progress=False, llm_score=llm)
        return {"start": item["start"],
                **{c: base64.b64encode(np.ascontiguousarray(pred[c].to_numpy(), dtype=np.float64).tobytes()).decode()
                   for c in ("score", "label", "proba")}}


def predict_on_ray(engine, run_dir, texts: list[str], llm_score=None) -> pd.DataFrame:
    """``score``, ``label``, ``proba`` of every text, like :func:`silr.run_folder.predict_texts`."""
    rps = engine.rows_per_shard
    items = [{"start": a, "texts": texts[a: a + rps],
              "llm_score": None if llm_score is None else [float(v) for v in llm_score[a: a + rps]]}
             for a in range(0, len(texts), rps)]
    cols = {c: np.empty(len(texts), dtype=np.float64) for c in ("score", "label", "proba")}
    for r in run_pool(engine, items, _PredictWorker, init_kwargs={"run_dir": str(run_dir)}):
        for c in cols:
            v = np.frombuffer(base64.b64decode(r[c]), dtype=np.float64)
            cols[c][r["start"]: r["start"] + v.size] = v
    return pd.DataFrame({"score": cols["score"], "label": cols["label"].astype(int), "proba": cols["proba"]})
