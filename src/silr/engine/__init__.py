"""Where the work runs: ``local`` (one process, the default; exactly the code paths without an engine) or ``ray``
(a Ray cluster: a local one started on the spot, ``auto`` = the cluster this machine belongs to, or
``ray://host:port``).

The Ray engine shards the corpus and runs annotation, features, the per-round head and relabeling on Ray
(:mod:`silr.engine.ray_annotate`, :mod:`silr.engine.features`, :mod:`silr.engine.stream_head`,
:mod:`silr.engine.ray_refine`). ``ray`` is an optional extra (``pip install 'silr[ray]'``), imported only when
the Ray engine is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ENGINES", "Engine", "EngineError", "resolve_engine", "require_ray", "connect"]

ENGINES = ("local", "ray")
RAY_EXTRA_HINT = "pip install 'silr[ray]'  (or: pip install 'ray[data,train]==2.60.0')"


class EngineError(ValueError):
    """A bad engine choice or a missing extra: one line the user can act on."""


@dataclass(frozen=True)
class Engine:
    """``kind``: ``local`` or ``ray``; ``address``: None (start a local cluster), ``auto`` or ``ray://host:port``;
    ``num_cpus``: CPUs of a local cluster started here (None: all); ``workers``: actors per pool (None: one per
    CPU of the cluster); ``rows_per_shard``: rows of one shard."""

    kind: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    workers: int | None = None
    rows_per_shard: int = 50_000

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"

    def describe(self) -> dict:
        d = {"kind": self.kind}
        if self.is_ray:
            d.update(address=self.address or "local (started by silr)", workers=self.workers,
                     rows_per_shard=self.rows_per_shard)
        return d


def resolve_engine(kind: str | None = "local", address: str | None = None, *, num_cpus: int | None = None,
                   workers: int | None = None, rows_per_shard: int | None = None) -> Engine:
    """Check an engine choice (``--engine``, ``--ray-address``, ``[engine]``); a bad one raises :class:`EngineError`."""
    kind = (kind or "local").strip().lower()
    if kind not in ENGINES:
        raise EngineError(f"unknown engine {kind!r}; choose one of: {', '.join(ENGINES)}")
    address = (address or "").strip() or None
    if address is not None:
        if kind != "ray":
            raise EngineError(f"--ray-address / [engine] address ({address!r}) needs the ray engine (--engine ray)")
        if address != "auto" and not address.startswith("ray://") and ":" not in address:
            raise EngineError(f"ray address must be 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    for name, v in (("num_cpus", num_cpus), ("workers", workers), ("rows_per_shard", rows_per_shard)):
        if v is not None and int(v) < 1:
            raise EngineError(f"[engine] {name} must be >= 1, got {v}")
    return Engine(kind, address, num_cpus, workers, int(rows_per_shard or 50_000))


def require_ray():
    """Import ``ray`` (and ``ray.data``), or fail with one line naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise EngineError(f"the ray engine needs Ray, which is not installed ({e}); install it with {RAY_EXTRA_HINT}") from None
    return ray


def connect(engine: Engine):
    """Start or join the cluster (once per process); returns the ``ray`` module."""
    ray = require_ray()
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        kw: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if engine.address:
            kw["address"] = engine.address
        elif engine.num_cpus:
            kw["num_cpus"] = engine.num_cpus
        # workers see the driver's silr source and environment (a local cluster shares this interpreter)
        env = {k: os.environ[k] for k in ("SILR_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                           "TOKENIZERS_PARALLELISM", "SILR_SHARED_DATA",
                                           "SILR_ENGINE_TEST_HOLD") if k in os.environ}
        if env:
            kw["runtime_env"] = {"env_vars": env}
        import logging

        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        ray.init(**kw)
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
    return ray


def default_workers(engine: Engine) -> int:
    """Actors per pool: ``engine.workers``, else one per CPU of the cluster."""
    if engine.workers:
        return int(engine.workers)
    ray = connect(engine)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
