"""`silr demo` across seeds and LLM threshold rules (benchmarks/SAMPLING.md, "The demo across seeds").

Each seed draws another 2,000-row corpus of the embedded Rotten Tomatoes snippets and another 50 gold-labeled rows
(the demo's own `prepare_demo(seed=...)`; the 4 in-context examples come from those rows, so each seed is a new
Gemma-3-270M pass, cached). Each rule sets round 0's cut of the LLM score: `accuracy` (the demo's default: the
accuracy-maximising cut on the 50 labeled rows), `prior` (the cut that gives the corpus the labeled rows' positive
rate) or a number (a fixed cut, no gold; 0 = the label words' own comparison). Everything else is the demo's
defaults. Recorded per (seed, rule): gold accuracy of round 0, of each round and of the handed-back labels (the
evaluation step after the run), the hand-back's choice, and the run's own estimate of round 1's gain with its
interval. Resumable: one JSON per (seed, rule) in benchmarks/results/demo_seeds/.

    python benchmarks/demo_seeds.py --seeds 0-9 --rules accuracy,prior,0
    python benchmarks/demo_seeds.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "demo_seeds"


def _commit() -> str:
    import silr  # an engine snapshot (`git archive`) names its commit in src/ENGINE_COMMIT

    stamp = Path(silr.__file__).resolve().parents[1] / "ENGINE_COMMIT"
    if stamp.is_file():
        return stamp.read_text().strip()
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def run_one(seed: int, rule: str) -> dict:
    from silr.job import prepare_demo, run_job

    cfg, n = prepare_demo(seed=seed)
    cfg.annotator.threshold = rule if rule in ("accuracy", "prior") else float(rule)
    work = Path(tempfile.mkdtemp(prefix=f"demo_{seed}_{rule}_"))
    try:
        t0 = time.time()
        s = run_job(cfg, work / "run", overwrite=True, echo=lambda m: None, on_round=None, progress=False)
        ev = s["evaluation"]
        g1 = (s["rounds"][1].get("gain_over_round0") or {}) if len(s["rounds"]) > 1 else {}
        return {"seed": seed, "rule": rule, "engine": _commit(), "n_corpus": n, "n_labeled": s["n_labeled"],
                "threshold": s.get("annotation", {}).get("threshold"),
                "gold_round_acc": [r["accuracy"] for r in ev["per_round"]],
                "gold_final": ev["final_accuracy"], "final_source": s["final_source"], "stop_reason": s["stop_reason"],
                "est_gain1": {k: g1.get(k) for k in ("value", "low", "high")} if g1 else None,
                "seconds": time.time() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report() -> str:
    recs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    rules = sorted({r["rule"] for r in recs}, key=lambda x: ("accuracy", "prior").index(x) if x in ("accuracy", "prior") else 9)
    lines = ["| rule | seeds | LLM labels (round 0) | round 1 | silr final | final - LLM (mean, min, max) | final below LLM | "
             "est. gain of round 1: right sign / interval covers the gold gain | engine |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rule in rules:
        rs = sorted((r for r in recs if r["rule"] == rule), key=lambda r: r["seed"])
        a0 = np.array([r["gold_round_acc"][0] for r in rs])
        a1 = np.array([r["gold_round_acc"][1] if len(r["gold_round_acc"]) > 1 else np.nan for r in rs])
        fin = np.array([r["gold_final"] for r in rs])
        d = fin - a0
        sign = cov = m = 0
        for r, x0, x1 in zip(rs, a0, a1):
            g = r["est_gain1"]
            if g and g.get("value") is not None and np.isfinite(x1):
                m += 1
                sign += int(np.sign(g["value"]) == np.sign(x1 - x0))
                cov += int(g["low"] <= x1 - x0 <= g["high"])
        eng = ",".join(sorted({r["engine"] for r in rs}))
        lines.append(f"| {rule} | {len(rs)} ({rs[0]['seed']}-{rs[-1]['seed']}) | {a0.mean():.3f} | {np.nanmean(a1):.3f} | {fin.mean():.3f} | "
                     f"{d.mean():+.3f} ({d.min():+.3f}, {d.max():+.3f}) | {int((d < 0).sum())} | {sign}/{m} / {cov}/{m} | {eng} |")
    lines.append("")
    lines.append("| seed | " + " | ".join(f"{r}: round 0 -> final (est. gain)" for r in rules) + " |")
    lines.append("|---|" + "---|" * len(rules))
    for seed in sorted({r["seed"] for r in recs}):
        cells = []
        for rule in rules:
            r = next((x for x in recs if x["seed"] == seed and x["rule"] == rule), None)
            if r is None:
                cells.append("-")
                continue
            g = r["est_gain1"]
            gs = f"{g['value']:+.3f} [{g['low']:+.2f}, {g['high']:+.2f}]" if g and g.get("value") is not None else "n/a"
            cells.append(f"{r['gold_round_acc'][0]:.3f} -> {r['gold_final']:.3f} ({r['final_source']}; {gs})")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--rules", default="accuracy,prior,0")
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args(argv)
    if a.report:
        print(report())
        return
    lo, _, hi = a.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    OUT.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for rule in a.rules.split(","):
            path = OUT / f"seed{seed}_{rule}.json"
            if path.is_file():
                continue
            rec = run_one(seed, rule)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rec, indent=1))
            os.replace(tmp, path)
            print(f"seed {seed} {rule}: round0 {rec['gold_round_acc'][0]:.3f} final {rec['gold_final']:.3f} "
                  f"({rec['final_source']}) {rec['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
