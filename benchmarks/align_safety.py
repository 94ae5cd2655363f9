"""Thin caller of :mod:`silr.bench.align_safety` (the code lives in the package): safety alignment of
Gemma-3-270M with a silr-refined reward model; writes benchmarks/results/align/ and ALIGN.md's numbers."""

import os
from pathlib import Path

os.environ.setdefault("SILR_BENCH_DIR", str(Path(__file__).resolve().parent))

from silr.bench.align_safety import main  # noqa: E402

if __name__ == "__main__":
    main()
