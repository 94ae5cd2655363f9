"""Thin caller of :mod:`silr.bench.sweep` (the code lives in the package): settings sweep on the real-LLM
track, tuning group only by default."""

from pathlib import Path

from silr.bench.sweep import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
