"""Score the benchmark corpora and test splits once with Gemma-3-270M (few-shot), for the suite's LLM track.

For each data set: the corpus (stratified train sample, see silr.bench.data) and the test sample are scored
with the prompt in benchmarks/prompts/<dataset>.toml and 4 balanced shots drawn from a fixed pool of 8 train
rows (outside the corpus when the train split is larger than the corpus). Scores go through the annotator's
SQLite cache (resumable; run it again after an interruption) and are written to
benchmarks/llm_scores/<dataset>.csv.gz (split,row,hash,score) with the prompt record in <dataset>.json.

Zero-/1-shot scores (``--shots 0`` / ``--shots 1``) use the same prompt files unchanged (no wording was tuned for
them) and go to benchmarks/llm_scores/<k>shot/.

Usage: nice -n 5 python benchmarks/llm_annotate.py (or python -m silr.bench.llm_annotate from the repository root) [--datasets a,b] [--max-corpus 3000] [--chunk 400]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ORDER = ("rotten_tomatoes", "selerosa", "pku_saferlhf_safety", "patent_claims_cpc", "moleculenet_bace",
         "peptide_amp_modlamp", "sms_spam", "sst2", "mr", "subj")


def main(argv=None, *, bench_dir: Path = Path("benchmarks")) -> None:
    HERE = Path(bench_dir)
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(ORDER))
    ap.add_argument("--max-corpus", type=int, default=3000)
    ap.add_argument("--max-test", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--splits", default="corpus,test")
    ap.add_argument("--shots", type=int, default=4,
                    help="few-shot examples per prompt (4: the suite's scores; 0 or 1: weaker labels, stored under "
                         "llm_scores/<k>shot/ unless --out-dir is given)")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--model", default="gemma-3-270m",
                    help="annotator: gemma-3-270m (the suite's scores) or qwen2.5-coder-1.5b (chat template, "
                         "stored under llm_scores/qwen/ unless --out-dir is given)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", action="store_true",
                    help="also store the LLM's hidden state at the end of the prompt (backbone 'llm'), from the "
                         "same forward pass, in the feature cache")
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from silr.annotate.local import LocalLMScorer, default_cache_dir
    from silr.annotate.prompts import load_prompt
    from silr.annotate.run import annotate_frame
    from silr.bench.data import llm_encoder, load_task

    scorer = LocalLMScorer(args.model, batch_size=args.batch_size, dtype=args.dtype)
    cache = default_cache_dir() / "bench-annotations.sqlite"
    sub = "" if args.model.startswith("gemma") else "qwen"
    out_dir = Path(args.out_dir) if args.out_dir else HERE / "llm_scores" / sub / ("" if args.shots == 4 else f"{args.shots}shot")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [d for d in args.datasets.split(",") if d]:
        try:
            task = load_task(name, max_corpus=args.max_corpus, max_test=args.max_test)
        except FileNotFoundError as e:
            print(f"[skip] {name}: {e}", flush=True)
            continue
        spec = load_prompt(HERE / "prompts" / f"{name}.toml")
        shots = task.shots.set_index("row")[["text", "label"]]  # shot "row" = train-split row
        frames, record = [], None
        t0 = time.time()
        enc = llm_encoder(task, HERE / "prompts", scorer=scorer) if args.hidden else None
        for split in args.splits.split(","):
            df = task.corpus if split == "corpus" else task.test
            for start in range(0, len(df), args.chunk):
                part = df.iloc[start : start + args.chunk]
                if enc is not None:  # one forward pass gives the features and the scores
                    enc.prefill(part["text"].tolist(), cache)
                out, record = annotate_frame(part, "text", scorer, spec, labeled=shots, shots=args.shots, threshold=0.0,
                                             progress=False, cache=cache, seed=0)
                frames.append(pd.DataFrame({"split": split, "row": part["row"].to_numpy(), "hash": part["hash"].to_numpy(),
                                            "score": out["llm_score"].to_numpy()}))
                done = sum(len(f) for f in frames)
                print(f"{name} {split} {start + len(part)}/{len(df)} ({done} rows, {time.time() - t0:.0f}s)", flush=True)
        allf = pd.concat(frames, ignore_index=True)
        allf["score"] = allf["score"].round(4)
        allf.to_csv(out_dir / f"{name}.csv.gz", index=False, compression="gzip")
        c = allf[allf.split == "corpus"]
        y = task.corpus.set_index("row").loc[c["row"], "label"].to_numpy()
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, c["score"].fillna(0))) if len(c) and len(set(y)) > 1 else float("nan")
        te = allf[allf.split == "test"]
        yt = task.test.set_index("row").loc[te["row"], "label"].to_numpy()  # evaluation only, never used to score
        test_auc = float(roc_auc_score(yt, te["score"].fillna(0))) if len(te) and len(set(yt)) > 1 else float("nan")
        meta = {
            "dataset": name,
            "model": scorer.describe(),
            "prompt_file": f"benchmarks/prompts/{name}.toml",
            "n_shots": args.shots,
            "prompt": {k: record["prompt"][k] for k in ("hash", "shots", "prefix", "seed")},
            "label_words": [spec.positive, spec.negative],
            "shot_pool_rows": task.shots["row"].tolist(),
            "max_corpus": args.max_corpus,
            "max_test": args.max_test,
            "rows": {s: int((allf.split == s).sum()) for s in allf.split.unique()},
            "corpus_auc": auc,
            "test_auc": test_auc,
            "seconds": round(time.time() - t0, 1),
        }
        (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2))
        print(f"[done] {name}: corpus AUC {auc:.3f}, test AUC {test_auc:.3f} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
