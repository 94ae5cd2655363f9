"""Run the fine-tuning track (silr.bench.finetune_track): data sets x seeds, one JSON per run, resumable.

Usage: nice -n 10 python benchmarks/finetune_track.py --datasets subj,rotten_tomatoes --seeds 0 [--tag main]
       [--methods lr50,ft50,setfit50,ft_llm,silr_ft] [--rounds 1] [--w 0.3] [--lr 3e-5] [--epochs 2]
       [--shots 0] [--params '{"silr_ftr": {"w": 0.3}}']
The refiner's full path and the suite's baselines: --methods llm,lr50,lr_50,lr_balanced,cleanlab,silr_frozen,ft50,
ft_llm,silr_ftr,setfit50 --rounds 2 (silr.bench.finetune_refiner).
Results: benchmarks/results/finetune/<tag>/<dataset>__seed<k>.json; then python benchmarks/finetune_report.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent


def main() -> int:
    from silr.bench.finetune_track import METHODS, run_cell

    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tag", default="main")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--w", type=float, default=None, help="silr_ft supervised weight")
    ap.add_argument("--lr", type=float, default=None, help="silr_ft / ft_llm encoder learning rate")
    ap.add_argument("--epochs", type=int, default=None, help="silr_ft / ft_llm epochs")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--shots", type=int, default=4,
                    help="which Gemma scores: 4 (benchmarks/llm_scores), 0 or 1 (benchmarks/llm_scores/<k>shot)")
    ap.add_argument("--scores", default=None,
                    help="folder of the stored LLM scores (<dataset>.csv.gz + .json), e.g. benchmarks/llm_scores/qwen; "
                         "overrides --shots")
    ap.add_argument("--features", default="minilm",
                    help="frozen features of the frozen-feature methods: minilm, e5 (multilingual, selerosa's task "
                         "encoder), llm (the LLM's own final hidden state under the prompt that scored the cell) or "
                         "llm:K (its layer K); a tag holds one kind")
    ap.add_argument("--params", default=None, help='JSON of per-method parameters, e.g. {"silr_ftr": {"w": 0.3}}')
    args = ap.parse_args()
    ft = {k: v for k, v in (("lr", args.lr), ("epochs", args.epochs)) if v is not None}
    params = {"silr_ft": {**ft, **({"w": args.w} if args.w is not None else {})}, "ft_llm": dict(ft)}
    if args.params:
        import json

        for k, v in json.loads(args.params).items():
            params[k] = {**params.get(k, {}), **v}
    scores_dir = Path(args.scores) if args.scores else HERE / "llm_scores" / ("" if args.shots == 4 else f"{args.shots}shot")
    out = HERE / "results" / "finetune" / args.tag
    for name in args.datasets.split(","):
        for seed in [int(x) for x in args.seeds.split(",")]:
            run_cell(name, seed, out_dir=out, scores_dir=scores_dir, methods=args.methods.split(","),
                     params=params, rounds=args.rounds, progress=args.progress, log=lambda m: print(m, flush=True),
                     features=args.features)
    return 0


if __name__ == "__main__":
    sys.exit(main())
