"""Why `silr demo`'s "did refinement help?" can have the wrong sign, measured over redrawn labeled samples.

Input: a `silr demo` output folder (annotated.csv: Gemma scores; labels.csv: each round's labels and the final
score; gold.csv: the held-out gold, read here only to draw simulated labeled rows and to score the estimates).
Each draw picks 50 labeled rows, fits the LLM threshold on them as `silr annotate --threshold accuracy` does
(`best_accuracy_threshold`; weighted by the design in the design arms), makes round 0's labels from it, and
estimates round 1's gain with silr's own `RoundGains` (round-0 labels of the labeled rows out of fold, as in a
run). Round 1's labels are the demo's (fixed): the refinement is not rerun per draw (see SAMPLING.md).

Arms:
  fixed0   uniform rows, round 0 = the demo's own threshold (held fixed; the earlier simulation)
  uniform  uniform rows (the demo today), threshold refitted on them
  strat    10 LLM-score quantile bins x 5 rows (self-weighting), threshold refitted on them
  design   `silr sample`'s design (pseudo-label = score > 0, the cut with no labels; 3 score bins per side,
           Neyman), threshold fitted with the design weights, design-weighted gain

    python benchmarks/sampling_demo_sign.py --demo DIR --draws 2000     # resumable: results/sampling/demo_sign_*.json
    python benchmarks/sampling_demo_sign.py --demo DIR --report
    python benchmarks/sampling_demo_sign.py --demo DIR --ablation     # the far-off-threshold draws, by prediction
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from silr.io.atomic import atomic_write_text
from silr.sampling import make_design
from silr.sampling.design import SamplingDesign
from silr.sampling.refit import RoundGains

OUT = Path(__file__).parent / "results" / "sampling"
ARMS = ("fixed0", "uniform", "strat", "design")


def load(demo: Path):
    a = pd.read_csv(demo / "annotated.csv")
    lab = pd.read_csv(demo / "labels.csv")
    y = pd.read_csv(demo / "gold.csv")["label"].to_numpy().astype(np.int64)
    thr = json.loads((demo / "annotation.json").read_text())["threshold"]["value"]
    return (y, a["llm_score"].to_numpy(np.float64), lab["round_1"].to_numpy(np.int64), lab["score"].to_numpy(np.float64),
            float(thr))


def best_threshold(s, y, w=None):
    """Accuracy-maximising cut on (weighted) labeled rows: the middle of the longest run of best cuts
    (`silr.annotate.calibrate.best_accuracy_threshold` with weights)."""
    w = np.ones(y.size) if w is None else np.asarray(w, np.float64)
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    acc = (((s[None, :] > cands[:, None]) == y[None, :].astype(bool)) * w).sum(1) / w.sum()
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    runs, cur = [], [best[0]]
    for b in best[1:]:
        if b == cur[-1] + 1:
            cur.append(b)
        else:
            runs.append(cur)
            cur = [b]
    runs.append(cur)
    run = max(runs, key=len)
    if len(run) > 1:
        return float((cands[run[0]] + cands[run[-1]]) / 2)
    return float(cands[run[len(run) // 2]])


def draw(arm: str, it: int, y, llm, s1, score, thr0):
    n = y.size
    design = None
    if arm in ("fixed0", "uniform"):
        rows = np.sort(np.random.default_rng([it, 1]).choice(n, 50, replace=False))
        w = None
    elif arm == "strat":
        rng = np.random.default_rng([it, 2])
        bins = np.minimum((np.argsort(np.argsort(llm, kind="stable")) * 10) // n, 9)
        rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(bins == b), 5, replace=False) for b in range(10)]))
        design = SamplingDesign(bins.astype(np.int64), rows, np.bincount(bins, minlength=10), np.full(10, 5), "stratified")
        w = None
    else:
        design = make_design((llm > 0).astype(np.int64), llm, n=50, seed=it)
        rows = design.rows
        w = 1.0 / design.inclusion[rows]
    t = thr0 if arm == "fixed0" else best_threshold(llm[rows], y[rows], w)
    s0 = (llm > t).astype(np.int64)
    truth = float(np.mean(s1 == y) - np.mean(s0 == y))
    # out-of-fold round-0 labels only where the threshold was fitted on these rows (as a run does)
    g = RoundGains(y[rows], rows, s0, s0[rows], llm, design, oof=arm != "fixed0")(s1, s1[rows], score)
    return {"t": t, "truth": truth, "value": g["value"], "low": g["low"], "high": g["high"],
            "n_changed_labeled": g["n_changed_labeled"]}


def run(demo: Path, draws: int):
    y, llm, s1, score, thr0 = load(demo)
    OUT.mkdir(parents=True, exist_ok=True)
    for arm in ARMS:
        f = OUT / f"demo_sign_{arm}.json"
        done = json.loads(f.read_text()) if f.is_file() else []
        for it in range(len(done), draws):
            done.append(draw(arm, it, y, llm, s1, score, thr0))
            if (it + 1) % 200 == 0 or it + 1 == draws:
                atomic_write_text(f, json.dumps(done))
        print(arm, len(done), "draws", flush=True)
    # the demo's own draw (its 50 rows, its threshold)
    rows = np.sort(np.random.default_rng(0).choice(y.size, 50, replace=False))
    s0 = (llm > thr0).astype(np.int64)
    g = RoundGains(y[rows], rows, s0, s0[rows], llm, None, oof=True)(s1, s1[rows], score)
    print("the demo's own rows:", json.dumps(g))


def report(demo: Path):
    y, llm, s1, score, thr0 = load(demo)
    cuts = np.linspace(llm.min(), llm.max(), 4001)
    accs = [(np.mean((llm > c) == y)) for c in cuts]
    print(f"demo: threshold fitted on its 50 rows {thr0:.3f} (corpus accuracy {np.mean((llm > thr0) == y):.3f}); "
          f"corpus-best cut {cuts[int(np.argmax(accs))]:.3f} (accuracy {max(accs):.3f}); round 1 {np.mean(s1 == y):.3f}\n")
    print("| arm | draws | true gain (mean) | point of the right sign | interval excl. 0, right side | excl. 0, wrong side "
          "| |true gain| >= 0.03: share, point of the wrong sign | coverage | mean width | draws whose threshold is >= 0.5 (the demo's: 0.838): share, point right sign, mean "
          "estimate - truth |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arm in ARMS:
        f = OUT / f"demo_sign_{arm}.json"
        if not f.is_file():
            continue
        R = pd.DataFrame(json.loads(f.read_text()))
        sign = np.sign(R.truth)
        right = np.mean(np.sign(R.value) == sign)
        excl_r = np.mean(((R.low > 0) & (sign > 0)) | ((R.high < 0) & (sign < 0)))
        excl_w = np.mean(((R.high < 0) & (sign > 0)) | ((R.low > 0) & (sign < 0)))
        cov = np.mean((R.low <= R.truth) & (R.truth <= R.high))
        big = R[R.t >= 0.5]
        clear = R[R.truth.abs() >= 0.03]
        print(f"| {arm} | {len(R)} | {R.truth.mean():+.3f} | {right:.3f} | {excl_r:.3f} | {excl_w:.3f} | {len(clear) / len(R):.3f}, {np.mean(np.sign(clear.value) != np.sign(clear.truth)):.3f} | {cov:.3f} | "
              f"{(R.high - R.low).mean():.3f} | {len(big) / len(R):.3f}, {np.mean(big.value > 0) if len(big) else float('nan'):.3f}, "
              f"{(big.value - big.truth).mean() if len(big) else float('nan'):+.3f} |")


def ablation(demo: Path):
    """The uniform draws whose threshold is >= 0.5, re-estimated with no prediction, each prediction alone, both."""
    from silr.sampling import gain_estimate, prediction_covariates
    from silr.selection import threshold_oof_predict

    y, llm, s1, score, _ = load(demo)
    R = json.loads((OUT / "demo_sign_uniform.json").read_text())
    out = {k: [] for k in ("none", "llm", "clf", "both")}
    truth = []
    for it, r in enumerate(R):
        if r["t"] < 0.5:
            continue
        rows = np.sort(np.random.default_rng([it, 1]).choice(y.size, 50, replace=False))
        s0 = (llm > r["t"]).astype(np.int64)
        s0l = s0.copy()
        s0l[rows] = threshold_oof_predict(llm[rows], y[rows])
        truth.append(r["truth"])
        for k, Q in (("none", None), ("llm", prediction_covariates(llm, None, s0)),
                     ("clf", prediction_covariates(None, score, s0)), ("both", prediction_covariates(llm, score, s0))):
            g = gain_estimate(y[rows], rows, s1, s0l, None, Q)
            out[k].append((g.value, g.low, g.high))
    T = np.array(truth)
    print("| predictions | draws | point right sign | mean estimate - truth | coverage | mean width |\n|---|---|---|---|---|---|")
    for k, v in out.items():
        v = np.array(v)
        print(f"| {k} | {len(v)} | {np.mean(np.sign(v[:, 0]) == np.sign(T)):.3f} | {np.mean(v[:, 0] - T):+.3f} | "
              f"{np.mean((v[:, 1] <= T) & (T <= v[:, 2])):.3f} | {np.mean(v[:, 2] - v[:, 1]):.3f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="far-off-threshold uniform draws: which predictions")
    a = ap.parse_args()
    ablation(a.demo) if a.ablation else report(a.demo) if a.report else run(a.demo, a.draws)
