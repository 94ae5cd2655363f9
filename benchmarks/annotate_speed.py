"""Thin caller of :mod:`silr.bench.annotate_speed` (the code lives in the package). Writes benchmarks/annotate_speed.md."""

from pathlib import Path

from silr.bench.annotate_speed import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
