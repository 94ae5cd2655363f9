"""What `silr sample --more K --run DIR` buys over K more uniform rows, on stored arrays (refinement not rerun).

Per data set: gold ``y``, the LLM score, round 0's labels ``s0`` and a refined labeling ``s1`` held fixed (the demo:
`silr demo`'s round 0 and round 1 labels and its final score; the benchmark sets: `benchmarks/sampling_sim.py`'s
prep arrays, ``s1`` = its frozen-feature stand-in for a refinement round). Each draw starts from 50 labeled rows
and adds K more; the arms differ only in which rows:

  uniform+K     50 uniform rows, then K uniform rows more (a uniform sample of 50 + K)
  uniform+more  50 uniform rows, then `more_rows` (the rows `silr sample --more K` adds; union = its design)
  design+K      `silr sample`'s design of 50 + K rows drawn at once
  design+more   `silr sample`'s design of 50 rows, then `more_rows`

Measured: the gain of ``s1`` over ``s0`` (`gain_estimate`, silr's design-weighted PPI++ with the LLM's and the
classifier's scores): coverage, mean width, right sign of the point; and the hand-back's choice between the two
labelings (`silr.selection.select`, default ``s1``, design-weighted bootstrap): accuracy of the chosen labels.

    python benchmarks/sampling_more_sim.py --demo DIR --datasets demo,rotten_tomatoes,sms_spam --k 25,50 --draws 500
    python benchmarks/sampling_more_sim.py --report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from silr.io.atomic import atomic_write_text
from silr.sampling import gain_estimate, make_design, prediction_covariates
from silr.sampling.more import more_rows
from silr.selection.candidates import Candidate, select

OUT = Path(__file__).parent / "results" / "sampling"
ARMS = ("uniform+K", "uniform+more", "design+K", "design+more")
#: the demo only: its own 50 labeled rows (its LLM threshold was fitted on them), then K more
DEMO_ARMS = ("demo50+K", "demo50+more")


def load(name: str, demo: Path | None):
    if name == "demo":
        a = pd.read_csv(demo / "annotated.csv")
        lab = pd.read_csv(demo / "labels.csv")
        y = pd.read_csv(demo / "gold.csv")["label"].to_numpy().astype(np.int64)
        # round 1's labels (never fitted on gold; the handed-back stack's are, on the demo's own rows)
        return (y, a["llm_score"].to_numpy(np.float64), lab["round_0"].to_numpy(np.int64),
                lab["round_1"].to_numpy(np.int64), lab["score"].to_numpy(np.float64))
    z = np.load(OUT / f"prep_{name}.npz")
    return z["y"].astype(np.int64), z["llm"], z["s0"].astype(np.int64), (z["clf"] > 0).astype(np.int64), z["clf"]


def one(arm: str, it: int, k: int, y, llm, s0, s1, clf):
    n = y.size
    changed = s1 != s0
    design = None
    if arm.startswith("demo50"):
        base = np.sort(np.random.default_rng(0).choice(n, 50, replace=False))  # `silr demo`'s labeled rows
        if arm == "demo50+K":
            rest = np.setdiff1d(np.arange(n), base)
            rows = np.sort(np.concatenate([base, np.random.default_rng([it, 3]).choice(rest, k, replace=False)]))
        else:
            _, design = more_rows(base, s0, changed, k, seed=it)
            rows = design.rows
    elif arm.startswith("uniform"):
        base = np.sort(np.random.default_rng([it, 1]).choice(n, 50, replace=False))
        if arm == "uniform+K":
            rest = np.setdiff1d(np.arange(n), base)
            rows = np.sort(np.concatenate([base, np.random.default_rng([it, 3]).choice(rest, k, replace=False)]))
        else:
            _, design = more_rows(base, s0, changed, k, seed=it)
            rows = design.rows
    else:
        if arm == "design+K":
            design = make_design(s0, llm, n=50 + k, seed=it)
        else:
            d0 = make_design(s0, llm, n=50, seed=it)
            _, design = more_rows(d0.rows, d0.strata, changed, k, seed=it)
        rows = design.rows
    Q = prediction_covariates(llm, clf, s0)
    if arm.startswith("demo50"):  # as a rerun of `silr refine` would: round 0 of the labeled rows out of fold
        from silr.sampling.refit import RoundGains

        # round 0 out of fold on the rows that fitted the threshold; `more_rows`' rows (design.after_run) as given
        r = RoundGains(y[rows], rows, s0, s0[rows], llm, design, oof=True)(s1, s1[rows], clf)
        g = type("G", (), {"value": r["value"], "low": r["low"], "high": r["high"]})
    else:
        g = gain_estimate(y[rows], rows, s1, s0, design, Q)
    w = None if design is None else 1.0 / design.inclusion[rows]
    cands = [Candidate("llm", s0, s0[rows] == y[rows]), Candidate("refined", s1, s1[rows] == y[rows])]
    chosen, _, _ = select(cands, "refined", n_bootstrap=1000, seed=it, weights=w)
    return {"value": g.value, "low": g.low, "high": g.high, "acc": float(np.mean(chosen.corpus_labels == y)),
            "chosen": chosen.name}


def run(names, ks, draws, demo):
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        arrays = load(name, demo)
        for k in ks:
            for arm in ARMS + (DEMO_ARMS if name == "demo" else ()):
                f = OUT / f"more_{name}_k{k}_{arm.replace('+', '_')}.json"
                done = json.loads(f.read_text()) if f.is_file() else []
                for it in range(len(done), draws):
                    done.append(one(arm, it, k, *arrays))
                    if (it + 1) % 100 == 0 or it + 1 == draws:
                        atomic_write_text(f, json.dumps(done))
                print(name, k, arm, len(done), flush=True)


def report(demo):
    rows = []
    for f in sorted(OUT.glob("more_*_k*_*.json")):
        name, rest = f.stem[len("more_"):].rsplit("_k", 1)
        k, arm = rest.split("_", 1)
        R = pd.DataFrame(json.loads(f.read_text()))
        y, llm, s0, s1, clf = load(name, demo)
        truth = float(np.mean(s1 == y) - np.mean(s0 == y))
        rows.append((name, int(k), arm.replace("_", "+"), len(R), truth,
                     np.mean((R.low <= truth) & (truth <= R.high)), (R.high - R.low).mean(),
                     np.mean(np.sign(R.value) == np.sign(truth)), np.mean(np.where(truth > 0, R.low > 0, R.high < 0)),
                     R.acc.mean(), R.acc.std(), np.mean(s0 == y), np.mean(s1 == y)))
    order = {a: i for i, a in enumerate(ARMS + DEMO_ARMS)}
    rows.sort(key=lambda r: (r[0], r[1], order.get(r[2], 9)))
    print("| data set | K | rows | draws | true gain | coverage | mean width | point right sign | excl. 0 on the right side "
          "| hand-back accuracy (mean +- sd) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} (s0 {r[11]:.3f}, s1 {r[12]:.3f}) | {r[1]} | {r[2]} | {r[3]} | {r[4]:+.3f} | {r[5]:.3f} | "
              f"{r[6]:.3f} | {r[7]:.3f} | {r[8]:.3f} | {r[9]:.3f} +- {r[10]:.3f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=None)
    ap.add_argument("--datasets", default="demo,rotten_tomatoes")
    ap.add_argument("--k", default="25,50")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    if a.report:
        report(a.demo)
    else:
        run(a.datasets.split(","), [int(x) for x in a.k.split(",")], a.draws, a.demo)
