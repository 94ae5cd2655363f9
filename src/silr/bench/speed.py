"""Speed of the refinement loop on cached-feature stand-ins: random 384-d float32 features."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["speed_run", "DEFAULT_SIZES"]

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


def speed_run(n: int, *, rounds: int = 5, dim: int = 384, seed: int = 0, params: dict | None = None) -> dict:
    """Time ``rounds`` refinement rounds over ``n`` rows of random features with 70%-accurate pseudo-labels."""
    from silr.refine import refiner_from_params

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim), dtype=np.float32)
    w = rng.standard_normal(dim).astype(np.float32)
    y = (X @ w > 0).astype(np.int8)
    s = np.where(rng.random(n) < 0.3, 1 - y, y).astype(np.int8)
    lab = rng.choice(n, 50, replace=False)
    p = {**(params or {}), "rounds": rounds}
    t0 = time.perf_counter()
    y_gold = np.full(n, -1, dtype=np.int64)
    y_gold[lab] = y[lab]
    m = refiner_from_params(seed=seed, **p).fit(X, s, y_gold=y_gold)
    sec = time.perf_counter() - t0
    import os

    return {"load_avg_1min": round(os.getloadavg()[0], 2), "n": int(n), "dim": dim, "rounds": int(m.n_rounds_), "seconds": round(sec, 2),
            "corpus_acc_round0": float(np.mean(s == y)), "corpus_acc_final": float(np.mean(m.transduction_ == y))}
