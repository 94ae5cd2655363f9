"""Seconds per round of `--finetune` on the local engine vs under Ray Train with 1 and 2 workers.

One round = one fit of the fine-tuning learner (all-MiniLM-L6-v2, the learner's defaults: lr 3e-5, 2 epochs,
batch 32, max_length 64) on N Rotten Tomatoes snippets (the embedded demo corpus, sampled with seed 0) with
pseudo-labels from a stated noise model (gold positive flipped w.p. 0.3, negative w.p. 0.1, numpy seed 0), every
5th row held out for the epoch choice. Writes one JSON per configuration into benchmarks/results/scale_finetune/
(skips finished ones). Usage: nice -n 10 python benchmarks/scale_finetune_ray.py [N]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "scale_finetune"


def main(n: int = 300) -> None:
    import torch

    from silr.corpora import load_embedded
    from silr.finetune import FineTuneLearner
    from silr.risks import UUWeights

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    df = load_embedded("rotten_tomatoes").sample(n, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy()
    s = np.where(np.where(y == 1, rng.random(n) < 0.3, rng.random(n) < 0.1), 1 - y, y)
    val = np.zeros(n, bool)
    val[::5] = True
    w = UUWeights.from_priors(float(s.mean()), 0.7, 0.1)  # fixed weights: the same risk for every configuration
    texts = df["text"].tolist()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    scores = {}
    for name, workers in (("local", 0), ("ray", 1), ("ray", 2)):
        f = OUT / f"n{n}-{name}-{workers}.json"
        if f.exists():
            continue
        if name == "local":
            m = FineTuneLearner(progress=False)
        else:
            from silr.engine import connect, resolve_engine
            from silr.engine.ray_train import RayTrainFineTuneLearner

            eng = resolve_engine("ray", num_cpus=2)
            connect(eng)
            m = RayTrainFineTuneLearner(engine=eng, work_dir=tempfile.mkdtemp(prefix="ftray-"), workers=workers,
                                        progress=False)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        m.fit(texts, s, w, val_mask=val, seed=0)
        secs = time.perf_counter() - t0
        g = m.decision_function(texts)
        rec = {"n": n, "engine": name, "workers": workers or None, "fit_seconds": round(secs, 1),
               "best_epoch": m.best_epoch_, "history": m.history_,
               "acc_vs_gold": float(((g > 0) == y).mean()), "pseudo_acc": float((s == y).mean()),
               "labels_pos": [int(v) for v in (g > 0).astype(int)],
               "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
               "machine": f"{platform.node()} {os.cpu_count()} cores, torch {torch.__version__}", "commit": commit}
        f.write_text(json.dumps(rec) + "\n")
        print(name, workers, rec["fit_seconds"], rec["acc_vs_gold"], flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
