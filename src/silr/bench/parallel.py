"""Run the suite one data set per process (for a machine shared with others), seed by seed, resumable.

Usage: nice -n 5 python benchmarks/run_suite_parallel.py DATASET [--seeds 0,1,2] [--tracks noise,llm]
Then `python benchmarks/run_suite_parallel.py --report --tracks llm,noise --notes benchmarks/NOTES.md` rewrites
benchmarks/RESULTS.md from the stored JSON (``python -m silr.bench.parallel`` from the repository root does the
same with ``--bench-dir``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from silr.env import use_local_models  # noqa: E402

use_local_models()
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv=None, *, bench_dir: Path = Path("benchmarks")) -> None:
    HERE = Path(bench_dir)
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tracks", default="noise")
    ap.add_argument("--noise", default="cc70,id70,cc60,id60")
    ap.add_argument("--max-corpus", type=int, default=3000)
    ap.add_argument("--max-test", type=int, default=1000)
    ap.add_argument("--llm-max-corpus", type=int, default=2000)
    ap.add_argument("--llm-max-test", type=int, default=500)
    ap.add_argument("--llm-backbones", default="llm,encoder",
                    help="LLM-track feature sets: 'llm' (the annotator's hidden state) and/or 'encoder' (the task's)")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--update", default="", help="comma-separated methods to rerun on stored runs")
    ap.add_argument("--notes", default="")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from silr.bench.runner import RunConfig, run_suite
    from silr.bench.suite import regenerate

    if args.report:
        from silr.bench.data import DEFAULT_DATASETS

        cfg = RunConfig(datasets=list(DEFAULT_DATASETS), seeds=[int(s) for s in args.seeds.split(",")],
                        tracks=args.tracks.split(","), noise=args.noise.split(","), max_corpus=args.max_corpus,
                        max_test=args.max_test, out=HERE, llm_max_corpus=args.llm_max_corpus,
                        llm_max_test=args.llm_max_test,
                        llm_backbones=[None if b == "encoder" else b for b in args.llm_backbones.split(",")])
        notes = Path(args.notes).read_text() if args.notes else ""
        regenerate(HERE, cfg, notes=notes)
        return
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = RunConfig(datasets=[args.dataset], seeds=[seed], tracks=args.tracks.split(","),
                        noise=args.noise.split(","), max_corpus=args.max_corpus, max_test=args.max_test, out=HERE,
                        llm_max_corpus=args.llm_max_corpus, llm_max_test=args.llm_max_test,
                        llm_backbones=[None if b == "encoder" else b for b in args.llm_backbones.split(",")])
        if args.update:
            cfg.methods = args.update.split(",")
        run_suite(cfg, skip_existing=True, update=bool(args.update), log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
