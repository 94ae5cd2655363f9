"""The per-round head trained by streaming mini-batches from the memory-mapped feature store.

:class:`StreamingHeadLearner` is a :class:`~silr.learners.HeadLearner` whose ``fit`` never holds the corpus: it
draws the same row permutation and the same batch order as the in-memory head (same seed, same generator
calls), standardises each batch with the training rows' mean and scale (computed in one streaming pass), and
computes the validation risk with :func:`silr.risks.batch_risk` on the held-out rows' scores (one float per row).
So with the same seed it follows the in-memory head's path up to float rounding of the mean and scale.

On the Ray engine the training runs in a pool actor (retried if its process dies) and each round's result is
stored under ``work/rounds/KEY`` (KEY: a hash of the features, the round's labels, split, weights, risk, seed and
settings): a restarted driver re-runs the loop and finished rounds load from disk instead of training again.
Scoring the corpus (``decision_function`` on the store) runs shard by shard on the pool.
"""

from __future__ import annotations

import base64
import hashlib

import json
import os
from pathlib import Path

import numpy as np
import torch

from silr.engine.features import gather_rows, release
from silr.engine.shards import worker_pid_file
from silr.io import atomic_path, atomic_write_text
from silr.learners import HeadLearner, _Head, auto_batch_size, fit_epochs
from silr.risks import UUWeights, batch_risk

__all__ = ["StreamingHeadLearner", "train_streaming"]

_CHUNK = 65536


def _state_to_b64(state: dict) -> str:
    from safetensors.torch import save

    return base64.b64encode(save({k: v.contiguous() for k, v in state.items()})).decode()


def _state_from_b64(s: str) -> dict:
    from safetensors.torch import load

    return load(base64.b64decode(s))


def _mean_scale(mm, rows: np.ndarray, n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and (unbiased) standard deviation of ``mm[rows]``, in one streaming pass (float64 sums)."""
    s = np.zeros(n_features, dtype=np.float64)
    ss = np.zeros(n_features, dtype=np.float64)
    rows = np.sort(rows)
    for a in range(0, rows.size, _CHUNK):
        x = np.asarray(mm[rows[a: a + _CHUNK]], dtype=np.float64)
        s += x.sum(0)
        ss += np.square(x).sum(0)
        release(mm)
    n = max(rows.size, 1)
    mean = s / n
    var = np.maximum(ss - n * mean * mean, 0.0) / max(n - 1, 1)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(np.sqrt(var).astype(np.float32)).clamp_min(1e-6)


def train_streaming(head: HeadLearner, store_path: str, pseudo: np.ndarray, weights: UUWeights, *, risk: str,
                    val_mask: np.ndarray, seed: int) -> HeadLearner:
    """``head.fit`` on the store's rows, reading one mini-batch at a time (dense features only)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mm = np.load(store_path, mmap_mode="r")
        pseudo = np.asarray(pseudo).astype(np.int64)
        val_mask = np.asarray(val_mask, dtype=bool)
        train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        gen = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        n_features = mm.shape[1]
        order = train_idx[torch.randperm(train_idx.size, generator=gen).numpy()]
        if head.standardize:
            mean, scale = _mean_scale(mm, train_idx, n_features)
        else:
            mean, scale = torch.zeros(n_features), torch.ones(n_features)
        head.module_ = _Head(n_features, head.hidden, mean, scale)
        opt = torch.optim.AdamW(head.module_.parameters(), lr=head.lr, weight_decay=head.weight_decay)
        bs = head.batch_size or auto_batch_size(train_idx.size)
        s_train = torch.from_numpy(pseudo[order])
        s_val = torch.from_numpy(pseudo[val_idx])
        starts = np.arange(0, train_idx.size, bs)

        def batch_loss(j: int) -> torch.Tensor:
            a = int(starts[j])
            xb = torch.from_numpy(gather_rows(mm, order[a: a + bs]))
            release(mm)
            if head.standardize:
                xb = (xb - mean) / scale
            out = head.module_(xb, standardized=head.standardize)
            return batch_risk(risk, out, s_train[a: a + bs], weights, slope=head.slope)

        def val_loss() -> torch.Tensor:
            return batch_risk(risk, torch.from_numpy(_scores(head, mm, val_idx)), s_val, weights, slope=head.slope)

        return fit_epochs(head, opt, gen, starts.size, batch_loss, val_loss if val_idx.size else None)
    finally:
        torch.set_num_threads(previous)


def _scores(head: HeadLearner, mm, rows: np.ndarray) -> np.ndarray:
    """The head's scores of ``mm[rows]`` (rows sorted or not), chunk by chunk."""
    out = np.empty(rows.size, dtype=np.float32)
    with torch.no_grad():
        for a in range(0, rows.size, _CHUNK):
            x = torch.from_numpy(gather_rows(mm, rows[a: a + _CHUNK]))
            release(mm)
            out[a: a + _CHUNK] = head.module_(x).numpy()
    return out


def _store_rows(X, store_path: str) -> tuple[int, int] | None:
    """When ``X`` is a block of consecutive rows of the store's memory map, ``(first row, rows)``; else None."""
    base = X
    while base is not None and not (isinstance(base, np.memmap) and getattr(base, "filename", None)):
        base = getattr(base, "base", None)
    if base is None or os.path.realpath(base.filename) != os.path.realpath(store_path):
        return None
    if not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous:
        return None
    row_bytes = base.shape[1] * base.itemsize
    off = X.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if off % row_bytes:
        return None
    return off // row_bytes, X.shape[0]


class _TrainWorker:
    """Pool actor: trains one round's head from its inputs file and stores the result (the round checkpoint)."""

    def __init__(self, work: str):
        torch.set_num_threads(1)
        worker_pid_file(Path(work), "train")

    def __call__(self, item: dict) -> dict:
        res = Path(item["result"])
        if not res.exists():
            head = HeadLearner(**item["params"])
            with np.load(item["inputs"]) as z:
                pseudo, val_mask = z["pseudo"], z["val_mask"]
            w = UUWeights(**item["weights"])
            train_streaming(head, item["store"], pseudo, w, risk=item["risk"], val_mask=val_mask, seed=item["seed"])
            body = {"state": _state_to_b64(head.state_dict()), "history": head.history_, "best_epoch": head.best_epoch_,
                    "config": head.config()}
            atomic_write_text(res, json.dumps(body) + "\n")
        return {"result": str(res)}


class _ScoreWorker:
    """Pool actor: the head's scores of one shard of the store."""

    def __init__(self, work: str):
        torch.set_num_threads(1)
        worker_pid_file(Path(work), "score")

    def __call__(self, item: dict) -> dict:
        body = json.loads(Path(item["head"]).read_text())
        head = HeadLearner.from_state(body["config"], _state_from_b64(body["state"]))
        mm = np.load(item["store"], mmap_mode="r")
        g = _scores(head, mm, np.arange(item["start"], item["stop"]))
        return {"start": item["start"], "scores": base64.b64encode(g.tobytes()).decode()}


class StreamingHeadLearner(HeadLearner):
    """A :class:`HeadLearner` that trains from the feature store on the Ray engine's pool (see the module)."""

    def __init__(self, *, store_path: str | None = None, work_dir: str | None = None, engine=None, **params):
        super().__init__(**params)
        self.store_path, self.work_dir, self.engine = store_path, work_dir, engine

    def clone(self) -> "StreamingHeadLearner":
        return type(self)(store_path=self.store_path, work_dir=self.work_dir, engine=self.engine, **self.get_params())

    def _key(self, pseudo, val_mask, weights, risk, seed) -> str:
        st = Path(self.store_path)
        h = hashlib.sha256()
        for f in sorted(st.parent.glob("done-*")):
            h.update(f"{f.name}:{f.stat().st_mtime_ns}".encode())
        h.update(json.dumps([str(st), self.get_params(), weights.__dict__, risk, int(seed)], sort_keys=True).encode())
        h.update(np.ascontiguousarray(pseudo, dtype=np.int8).tobytes())
        h.update(np.packbits(np.asarray(val_mask, dtype=bool)).tobytes())
        return h.hexdigest()[:24]

    def fit(self, X, pseudo, weights: UUWeights, *, risk: str, val_mask: np.ndarray, seed: int = 0, labeled=None):
        if labeled is not None and labeled[2]:
            raise ValueError("the ray engine's streaming head has no supervised weight yet (use the local engine)")
        if _store_rows(X, self.store_path) != (0, X.shape[0]) or self.engine is None:
            return super().fit(X, pseudo, weights, risk=risk, val_mask=val_mask, seed=seed, labeled=labeled)
        from silr.engine.shards import run_pool

        rounds = Path(self.work_dir) / "rounds"
        rounds.mkdir(parents=True, exist_ok=True)
        key = self._key(pseudo, val_mask, weights, risk, seed)
        result = rounds / f"{key}.json"
        if not result.exists():
            inputs = rounds / f"{key}.inputs.npz"
            with atomic_path(inputs) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, pseudo=np.asarray(pseudo, dtype=np.int8), val_mask=np.asarray(val_mask, dtype=bool))
            run_pool(self.engine, [{"result": str(result), "inputs": str(inputs), "params": self.get_params(),
                                    "weights": weights.__dict__, "risk": risk, "seed": int(seed),
                                    "store": self.store_path}],
                     _TrainWorker, init_kwargs={"work": self.work_dir}, workers=1)
            inputs.unlink(missing_ok=True)
        body = json.loads(result.read_text())
        self.module_ = HeadLearner.from_state(body["config"], _state_from_b64(body["state"])).module_
        self.history_, self.best_epoch_ = body["history"], int(body["best_epoch"])
        self._head_file = str(result)
        return self

    def decision_function(self, X, *, batch_size: int = 65536) -> np.ndarray:
        where = _store_rows(X, self.store_path) if self.store_path else None
        head_file = getattr(self, "_head_file", None)
        if where is None or self.engine is None or head_file is None:
            return super().decision_function(X, batch_size=batch_size)
        from silr.engine.shards import run_pool

        first, n = where
        rps = self.engine.rows_per_shard
        items = [{"head": head_file, "store": self.store_path, "start": first + a, "stop": first + min(a + rps, n)}
                 for a in range(0, n, rps)]
        out = np.empty(n, dtype=np.float32)
        for r in run_pool(self.engine, items, _ScoreWorker, init_kwargs={"work": self.work_dir}):
            g = np.frombuffer(base64.b64decode(r["scores"]), dtype=np.float32)
            out[r["start"] - first: r["start"] - first + g.size] = g
        return out

    # a saved model is a plain head: the store and the cluster are not part of it
    @classmethod
    def from_state(cls, config: dict, state: dict) -> HeadLearner:
        return HeadLearner.from_state(config, state)


