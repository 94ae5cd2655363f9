"""Final accuracy of the refinement with the same 50-label budget drawn uniformly (today) or by `silr sample`'s design
(benchmarks/SAMPLING.md, "final accuracy"). Same corpus, LLM scores, pseudo-labels (the fixed test-split cut of
benchmarks/sampling_sim.py), features (the task's backbone, cached) and refiner defaults for both arms; only which
50 rows carry gold differs (uniform: `default_rng([seed, 1])`; design: `make_design(..., seed=seed)`).
Resumable: one JSON per (data set, seed) in benchmarks/results/sampling/acc_*.json.

    python benchmarks/sampling_accuracy.py --datasets rotten_tomatoes,sms_spam,sst2 --seeds 10
    python benchmarks/sampling_accuracy.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sampling_sim import OUT, prepare  # noqa: E402


def run_one(name: str, seed: int, X, arms=("uniform", "design")) -> dict:
    from silr.refine import SelfIterativeRefiner
    from silr.sampling import make_design

    p = prepare(name)
    y, llm, s0 = p["y"], p["llm"], p["s0"]
    n = y.size
    out = {"dataset": name, "seed": seed, "llm_accuracy": float(np.mean(s0 == y))}
    for arm in arms:
        if arm == "uniform":
            rows, design = np.sort(np.random.default_rng([seed, 1]).choice(n, 50, replace=False)), None
        else:
            design = make_design(s0, llm, n=50, seed=seed)
            rows = design.rows
        gold = np.full(n, -1)
        gold[rows] = y[rows]
        t0 = time.perf_counter()
        try:
            m = SelfIterativeRefiner(seed=seed).fit(X, s0, y_gold=gold, llm_score=llm, sample_design=design)
            out[arm] = {"final_accuracy": float(np.mean(m.transduction_ == y)), "source": str(m.final_source_),
                        "seconds": time.perf_counter() - t0}
        except Exception as e:  # recorded, never hidden
            out[arm] = {"error": f"{type(e).__name__}: {e}"}
    return out


def report() -> str:
    rs = [json.loads(f.read_text()) for f in sorted(OUT.glob("acc_*.json"))]
    lines = ["| data set | seeds | LLM labels | uniform 50 + today's estimators | `silr sample` 50 + design estimators | design - uniform (mean, min, max) |",
             "|---|---|---|---|---|---|"]
    for name in sorted({r["dataset"] for r in rs}):
        sub = [r for r in rs if r["dataset"] == name and "final_accuracy" in r["uniform"] and "final_accuracy" in r["design"]]
        u = np.array([r["uniform"]["final_accuracy"] for r in sub])
        d = np.array([r["design"]["final_accuracy"] for r in sub])
        lines.append(f"| {name} | {len(sub)} | {np.mean([r['llm_accuracy'] for r in sub]):.3f} | {u.mean():.3f} +- {u.std():.3f} | "
                     f"{d.mean():.3f} +- {d.std():.3f} | {np.mean(d - u):+.3f} ({np.min(d - u):+.3f}, {np.max(d - u):+.3f}) |")
    w = [r for r in rs if "final_accuracy" in (r.get("design_weighted") or {}) and "final_accuracy" in r["design"]]
    if w:
        lines += ["", "| data set | seeds | uniform 50 (as above) | design, hand-back unweighted (as above) | design, hand-back "
                  "weighted (`--rerun-design`) | weighted - unweighted (mean, min, max) | weighted - uniform (mean) |",
                  "|---|---|---|---|---|---|---|"]
        for name in sorted({r["dataset"] for r in w}):
            sub = [r for r in w if r["dataset"] == name]
            u = np.array([r["uniform"]["final_accuracy"] for r in sub])
            d = np.array([r["design"]["final_accuracy"] for r in sub])
            dw = np.array([r["design_weighted"]["final_accuracy"] for r in sub])
            lines.append(f"| {name} | {len(sub)} | {u.mean():.3f} +- {u.std():.3f} | {d.mean():.3f} +- {d.std():.3f} | "
                         f"{dw.mean():.3f} +- {dw.std():.3f} | {np.mean(dw - d):+.3f} ({np.min(dw - d):+.3f}, "
                         f"{np.max(dw - d):+.3f}) | {np.mean(dw - u):+.3f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="rotten_tomatoes,sms_spam,sst2")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--rerun-design", action="store_true",
                    help="rerun the design arm with today's code into key 'design_weighted' of the existing files (the "
                         "hand-back's stack and probe weighted by the design since commit 1d2d052)")
    a = ap.parse_args(argv)
    if a.report:
        print(report())
        return
    import torch

    torch.set_num_threads(1)
    from silr.bench.data import load_task, task_features

    for name in a.datasets.split(","):
        def done(s):
            f = OUT / f"acc_{name}_{s}.json"
            return f.is_file() and (not a.rerun_design or "design_weighted" in json.loads(f.read_text()))

        todo = [s for s in range(a.seeds) if not done(s)]
        if not todo:
            continue
        Xc, _, _ = task_features(load_task(name, max_corpus=2000, max_test=500))
        for s in todo:
            path = OUT / f"acc_{name}_{s}.json"
            if a.rerun_design:
                r = json.loads(path.read_text()) if path.is_file() else run_one(name, s, Xc)
                r["design_weighted"] = run_one(name, s, Xc, arms=("design",))["design"]
            else:
                r = run_one(name, s, Xc)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(r, indent=1))
            os.replace(tmp, path)
            print(name, s, {k: v for k, v in r.items() if k in ("uniform", "design", "design_weighted")}, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
