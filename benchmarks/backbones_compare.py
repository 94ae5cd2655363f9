"""Thin caller of :mod:`silr.bench.backbones_compare` (the code lives in the package): backbones under the
same simulated pseudo-labels; writes benchmarks/BACKBONES.md."""

import os
from pathlib import Path

os.environ.setdefault("SILR_BENCH_DIR", str(Path(__file__).resolve().parent))

from silr.bench.backbones_compare import main  # noqa: E402

if __name__ == "__main__":
    main()
