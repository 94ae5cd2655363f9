"""Thin caller of :mod:`silr.bench.parallel` (the code lives in the package): the suite one data set per process,
seed by seed, resumable; ``--report`` rewrites benchmarks/RESULTS.md from the stored runs.

Usage: nice -n 5 python benchmarks/run_suite_parallel.py DATASET [--seeds 0,1,2] [--tracks noise,llm]
       python benchmarks/run_suite_parallel.py --report --tracks llm,noise --notes benchmarks/NOTES.md
"""

from pathlib import Path

from silr.bench.parallel import main

if __name__ == "__main__":
    main(bench_dir=Path(__file__).resolve().parent)
