"""Shards of a corpus (row ranges of CSV/TSV/JSONL/Parquet files, or of a folder of them), a manifest that
says which job a shards folder belongs to, and :func:`run_pool`: one call per shard on a Ray Data actor pool.

A shard is done when its output file exists: outputs are written atomically (:mod:`silr.io.atomic`), so a
killed job leaves only finished shards and rerunning it does the rest.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from silr.io import InputError, atomic_write_text, read_table
from silr.io.tables import SUPPORTED_SUFFIXES

__all__ = ["Shard", "list_input_files", "count_rows", "plan_shards", "read_shard", "check_manifest", "run_pool"]


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of ``file`` (or of an in-memory list handed to the pool); ``id`` names its outputs."""

    id: int
    file: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.id:05d}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(s: str) -> "Shard":
        return Shard(**json.loads(s))


def list_input_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or the table files of a folder (sorted by name; hidden files skipped)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input '{p}' does not exist")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                   and f.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise InputError(f"input folder '{p}' holds no table file ({', '.join(sorted(SUPPORTED_SUFFIXES))})")
    return files


def count_rows(file: Path, text_col: str) -> int:
    if file.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(file).metadata.num_rows)
    return len(read_table(file, required=[text_col], what="input"))


def plan_shards(files: Sequence[Path], text_col: str, rows_per_shard: int) -> list[Shard]:
    """Every file cut into row ranges of at most ``rows_per_shard`` rows, numbered in file order."""
    shards: list[Shard] = []
    for f in files:
        n = count_rows(f, text_col)
        for a in range(0, n, rows_per_shard):
            shards.append(Shard(len(shards), str(f), a, min(a + rows_per_shard, n)))
    return shards


def read_shard(shard: Shard, text_col: str) -> pd.DataFrame:
    """The shard's rows (all columns), checked for ``text_col``; Parquet reads only the row groups it needs."""
    f = Path(shard.file)
    if f.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        if text_col not in pf.schema_arrow.names:
            raise InputError(f"input file '{f}' has no column '{text_col}'")
        parts, offset = [], 0
        for g in range(pf.num_row_groups):
            m = pf.metadata.row_group(g).num_rows
            if offset + m > shard.start and offset < shard.stop:
                t = pf.read_row_group(g)
                parts.append(t.slice(max(0, shard.start - offset), min(shard.stop, offset + m) - max(shard.start, offset)))
            offset += m
        import pyarrow as pa

        return pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame({text_col: []})
    df = read_table(f, required=[text_col], what="input")
    return df.iloc[shard.start: shard.stop]


def check_manifest(folder: Path, job: dict) -> None:
    """Write ``manifest.json`` describing the job on first use; on a rerun, refuse a folder of another job."""
    folder.mkdir(parents=True, exist_ok=True)
    mf = folder / "manifest.json"
    if mf.exists():
        old = json.loads(mf.read_text())
        if old.get("job") != job:
            changed = sorted(k for k in set(old.get("job", {})) | set(job) if old.get("job", {}).get(k) != job.get(k))
            raise InputError(f"shards folder '{folder}' belongs to another job (different {', '.join(changed)}); "
                             "remove it or choose another output")
        return
    atomic_write_text(mf, json.dumps({"job": job}, indent=2, default=str) + "\n")


def run_pool(engine, items: Sequence[dict], actor_cls: type, *, init_kwargs: dict | None = None,
             workers: int | None = None, num_cpus: float = 1.0) -> list[dict]:
    """Call ``actor_cls(**init_kwargs)(item)`` for every item on a Ray Data actor pool of ``workers`` actors.

    An actor whose process dies mid-call is restarted and the call retried (Ray Data's actor pools restart
    actors and retry their calls when the process is lost; an exception raised by the call itself is not
    retried: it fails the job with its message). So the calls must be idempotent (they are: every shard's output is written atomically and its partial work cached). Returns
    one result dict per item (the actor's return value), in no particular order.
    """
    from silr.engine import connect, default_workers

    if not items:
        return []
    ray = connect(engine)
    k = min(len(items), workers or default_workers(engine))
    ds = ray.data.from_items([{"item": json.dumps(it)} for it in items], override_num_blocks=len(items))
    out = ds.map_batches(
        _PoolAdapter, fn_constructor_kwargs={"actor_cls": actor_cls, "init_kwargs": init_kwargs or {}},
        batch_size=1, compute=ray.data.ActorPoolStrategy(size=k), num_cpus=num_cpus,
    ).take_all()
    results = [json.loads(r["result"]) for r in out]
    for r in results:
        if "__user_error__" in r:  # a bad input, setting or server met by a worker: the one-line error of one process
            raise _rebuild(r["__user_error__"], r["message"])
    return results


def _rebuild(kind: str, message: str) -> Exception:
    from silr.annotate.types import AnnotationError

    return {"AnnotationError": AnnotationError, "OSError": OSError}.get(kind, ValueError)(message)


class _PoolAdapter:
    """Ray Data's batch interface around an actor that takes one item (a dict) and returns a dict."""

    def __init__(self, actor_cls: type, init_kwargs: dict):
        self.inner = actor_cls(**init_kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from silr.annotate.types import AnnotationError

        _test_hold(type(self.inner).__name__)
        results = []
        for s in batch["item"]:
            try:
                r = self.inner(json.loads(s))
            except AnnotationError as e:  # user errors are not retried: they come back to the driver as they are
                r = {"__user_error__": "AnnotationError", "message": str(e)}
            except OSError as e:
                r = {"__user_error__": "OSError", "message": str(e)}
            except ValueError as e:
                r = {"__user_error__": "ValueError", "message": str(e)}
            results.append(json.dumps(r, default=str))
        return {"result": results}


#: fault tests: ``ROLE:FOLDER`` makes the pool actor of class ROLE (e.g. ``_TrainWorker``) write
#: ``FOLDER/held-PID`` at the start of a call and wait there until ``FOLDER/go`` exists, so a test can kill it
#: mid-call at a known point
TEST_HOLD_ENV = "SILR_ENGINE_TEST_HOLD"


def _test_hold(role: str) -> None:
    spec = os.environ.get(TEST_HOLD_ENV, "")
    want, _, folder = spec.partition(":")
    if not spec or want != role:
        return
    import time

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"held-{os.getpid()}").write_text(str(os.getpid()))
    end = time.monotonic() + 300
    while not (d / "go").exists() and time.monotonic() < end:
        time.sleep(0.05)


def worker_pid_file(folder: Path, role: str) -> None:
    """Record this worker's process id (``folder/workers/ROLE-PID``): the fault tests kill workers by it."""
    d = folder / "workers"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{role}-{os.getpid()}").write_text(str(os.getpid()))

