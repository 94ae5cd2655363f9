"""Safety alignment of Gemma-3-270M with a silr-refined reward model (paper section 6, last paragraph).

Stages (each one caches its output under benchmarks/results/align/, so the script resumes):

1. ``annotate``  Gemma-3-270M labels a random sample of pku_saferlhf_safety train rows (safe/harmful,
   4 shots from the 50 gold rows, threshold fitted on those 50 rows); scored in chunks, SQLite-cached.
2. ``rewards``   three reward models on frozen MiniLM features:
   (1) ``silr``   -- ``silr refine`` on the LLM labels + 50 gold rows;
   (2) ``vanilla`` -- class-balanced logistic regression on the raw LLM labels ("vanilla RLAIF");
   (3) ``judge``  -- logistic regression on all gold train labels; used for evaluation only.
3. ``bon``       held-out test prompts; n answers per prompt sampled from Gemma-3-270M; the judge's safety
   rate of the first sample (untouched policy) vs best-of-n with reward (1) vs (2).
4. ``dpo``       a short LoRA DPO run on pairs ranked by reward (1) and (2); judge's safety rate after.
5. ``selfrefine`` self-refinement of generations on arithmetic questions (silr.align.self_refine_answers).

Usage: nice -n 5 python benchmarks/align_safety.py [--stages annotate,rewards,bon,dpo,selfrefine] ...
Writes benchmarks/ALIGN.md's numbers to benchmarks/results/align/summary.json.
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "align"
DATA = "pku_saferlhf_safety"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _summary() -> dict:
    p = WORK / "summary.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _save_summary(upd: dict) -> None:
    s = _summary()
    s.update(upd)
    (WORK / "summary.json").write_text(json.dumps(s, indent=2))


def split_rows(n_corpus: int, n_labeled: int, seed: int = 0):
    """Corpus = the first ``n_corpus`` rows of a fixed permutation of train; gold = its first ``n_labeled``."""
    import numpy as np

    from silr.data import load_shared

    train = load_shared(DATA, "train")
    perm = np.random.default_rng(seed).permutation(len(train))
    corpus = train.iloc[perm[:n_corpus]].reset_index(drop=True)
    labeled = corpus.iloc[:n_labeled].reset_index(drop=True)
    return train, corpus, labeled


def stage_annotate(args) -> None:
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import load_prompt
    from silr.annotate.run import annotate_frame

    _, corpus, labeled = split_rows(args.n_corpus, args.n_labeled)
    spec = load_prompt(HERE / "prompts" / f"{DATA}.toml")
    scorer = LocalLMScorer("gemma-3-270m", batch_size=16)
    cache = WORK / "annotations.sqlite"
    frames, rec = [], None
    t0 = time.time()
    for start in range(0, len(corpus), args.chunk):
        part = corpus.iloc[start : start + args.chunk]
        out, rec = annotate_frame(part, "text", scorer, spec, labeled=labeled, shots=4, threshold="accuracy",
                                  progress=False, cache=cache, seed=0)
        frames.append(out)
        log(f"annotate {start + len(part)}/{len(corpus)} ({time.time() - t0:.0f}s)")
    allf = pd.concat(frames, ignore_index=True)
    # one threshold for all chunks (fitted on the 50 gold rows): take it from the last record
    thr = float(rec["threshold"]["value"])
    allf["pseudo_label"] = (allf["llm_score"] > thr).astype(int)
    allf.to_csv(WORK / "corpus_annotated.csv", index=False)
    labeled.to_csv(WORK / "labeled.csv", index=False)
    acc = float((allf["pseudo_label"] == allf["label"]).mean())
    _save_summary({"annotate": {"n_corpus": len(allf), "n_labeled": len(labeled), "threshold": thr,
                                "llm_label_accuracy_on_corpus": acc, "positive_rate": float(allf.pseudo_label.mean()),
                                "seconds": round(time.time() - t0, 1), "threshold_record": rec["threshold"]}})
    log(f"LLM label accuracy on the corpus: {acc:.3f}")


STAGES = {"annotate": stage_annotate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="annotate,rewards,bon,dpo,selfrefine")
    ap.add_argument("--n-corpus", type=int, default=1500)
    ap.add_argument("--n-labeled", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--dpo-steps", type=int, default=30)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for st in [s for s in args.stages.split(",") if s]:
        t0 = time.time()
        log(f"stage {st}")
        STAGES[st](args)
        _save_summary({f"seconds_{st}": round(time.time() - t0, 1)})


if __name__ == "__main__":
    sys.exit(main())
