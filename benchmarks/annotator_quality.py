"""Thin caller of :mod:`silr.bench.annotator_quality` (the code lives in the package). Writes benchmarks/ANNOTATOR.md."""

from pathlib import Path

from silr.bench.annotator_quality import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
