"""Thin caller of :mod:`silr.bench.annotate_load` (the code lives in the package). Load test of `silr annotate`; writes benchmarks/annotate_load.md."""

from pathlib import Path

from silr.bench.annotate_load import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
