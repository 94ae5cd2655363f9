"""Thin caller of :mod:`silr.bench.llm_annotate` (the code lives in the package). Scores every benchmark data set with Gemma-3-270M (resumable)."""

from pathlib import Path

from silr.bench.llm_annotate import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
