"""Out-of-core features: one float32 ``.npy`` file (rows x dim), memory-mapped, filled shard by shard by a Ray
actor pool, each actor holding the backbone. A shard is done when its marker file exists (written after its rows
are flushed), so a killed job recomputes only unfinished shards. Readers gather rows in sorted order and drop the
mapped pages after each batch (``madvise(MADV_DONTNEED)``), so a reader's resident memory stays bounded by its
batch, not the corpus.

On a multi-node cluster the folder must be on storage every node sees (NFS, a mounted bucket).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from silr.engine.shards import worker_pid_file
from silr.io import atomic_write_text

__all__ = ["FeatureStore", "compute_features", "gather_rows", "release"]

FEATURES_FILE = "features.npy"


def release(mm) -> None:
    """Drop the pages a memory map has read from this process's resident set (the page cache keeps them)."""
    m = getattr(mm, "_mmap", None)
    base = mm
    while m is None and getattr(base, "base", None) is not None:
        base = base.base
        m = getattr(base, "_mmap", None) if not isinstance(base, mmap.mmap) else base
    if m is not None and hasattr(m, "madvise"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # pragma: no cover - closed map
            pass


def gather_rows(mm, rows: np.ndarray) -> np.ndarray:
    """``mm[rows]`` as an in-memory float32 array, read in sorted row order."""
    rows = np.asarray(rows)
    srt = np.argsort(rows, kind="stable")
    got = np.asarray(mm[rows[srt]], dtype=np.float32)
    out = np.empty_like(got)
    out[srt] = got
    return out


class FeatureStore:
    """``folder/features.npy`` (``n_rows`` x ``dim`` float32) with one done-marker per shard."""

    def __init__(self, folder: str | os.PathLike, n_rows: int, dim: int):
        self.folder = Path(folder)
        self.n_rows, self.dim = int(n_rows), int(dim)
        self.path = self.folder / FEATURES_FILE

    def create(self) -> None:
        from numpy.lib.format import open_memmap

        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            mm = np.load(self.path, mmap_mode="r")
            if mm.shape == (self.n_rows, self.dim) and mm.dtype == np.float32:
                return
            del mm
            for f in self.folder.glob("done-*"):
                f.unlink()
        mm = open_memmap(self.path, mode="w+", dtype=np.float32, shape=(self.n_rows, self.dim))
        del mm

    def open(self) -> np.memmap:
        return np.load(self.path, mmap_mode="r")

    def marker(self, shard_id: int) -> Path:
        return self.folder / f"done-{shard_id:05d}"

    def is_done(self, shard_id: int) -> bool:
        return self.marker(shard_id).exists()

    def write(self, start: int, X: np.ndarray, shard_id: int) -> None:
        mm = np.load(self.path, mmap_mode="r+")
        mm[start: start + len(X)] = X
        mm.flush()
        release(mm)
        del mm
        atomic_write_text(self.marker(shard_id), f"{start} {start + len(X)}\n")

    def fingerprint(self) -> str:
        """Changes whenever the stored rows may have changed (shape, the markers' times)."""
        h = hashlib.sha256(f"{self.path}:{self.n_rows}x{self.dim}".encode())
        for f in sorted(self.folder.glob("done-*")):
            h.update(f"{f.name}:{f.stat().st_mtime_ns}".encode())
        return h.hexdigest()[:16]


class _FeatureWorker:
    """An actor holding the backbone: encodes one shard of texts and writes its rows into the store."""

    def __init__(self, backbone, folder: str, n_rows: int, dim: int):
        import torch

        torch.set_num_threads(1)
        self.bb = backbone
        if hasattr(self.bb, "progress"):
            self.bb.progress = False
        self.store = FeatureStore(folder, n_rows, dim)
        worker_pid_file(Path(folder), "features")

    def __call__(self, item: dict) -> dict:
        sid, start = int(item["id"]), int(item["start"])
        if not self.store.is_done(sid):
            X = np.asarray(self.bb.transform(item["texts"]), dtype=np.float32)
            self.store.write(start, X, sid)
        return {"id": sid, "rows": len(item["texts"])}


def compute_features(engine, backbone, texts: Sequence[str], folder: str | os.PathLike, *, dim: int,
                     workers: int | None = None) -> FeatureStore:
    """The features of ``texts`` in ``folder`` (resumed: finished shards are kept), computed on the engine's pool."""
    from silr.engine.shards import run_pool

    store = FeatureStore(folder, len(texts), dim)
    store.create()
    rps = engine.rows_per_shard
    items = [{"id": i, "start": a, "texts": list(texts[a: a + rps])}
             for i, a in enumerate(range(0, len(texts), rps)) if not store.is_done(i)]
    if items:
        run_pool(engine, items, _FeatureWorker, workers=workers,
                 init_kwargs={"backbone": backbone, "folder": str(store.folder), "n_rows": store.n_rows, "dim": dim})
    missing = [i for i in range(-(-len(texts) // rps)) if not store.is_done(i)]
    if missing:
        raise RuntimeError(f"feature shards {missing[:5]} were not written")
    atomic_write_text(store.folder / "store.json", json.dumps({"rows": store.n_rows, "dim": dim,
                                                              "rows_per_shard": rps}) + "\n")
    return store
