"""Coverage and width of the prior / accuracy intervals by simulation (benchmarks/SAMPLING.md).

For each data set: the corpus (2,000 rows, silr.bench.data), Gemma-3-270M's scores (benchmarks/llm_scores),
pseudo-labels = score > the accuracy-maximising cut on the *test* split (fixed across draws; no corpus gold),
a "round 1" labeling = the sign of a frozen-feature logistic regression trained on the corpus pseudo-labels
(5-fold out-of-fold decision values, no gold; cached in benchmarks/results/sampling/). Then, for each of
DRAWS draws of a 50-row labeled sample, the intervals of

  (a) today: uniform sample + post-stratified bootstrap (silr.priors.estimate_priors; for the gain a paired
      bootstrap of the labeled rows' correctness, the hand-back's statistic),
  (b) uniform sample + PPI++ (ppi_py.ppi_mean_ci, power-tuned; one prediction: the mean of the guesses),
  (b') uniform sample + silr's PPI++ (post-stratified, silr.sampling.round_estimates),
  (c) `silr sample` design (silr.sampling.make_design) + silr's design-weighted PPI++,
  (c0) the design with the plain design-weighted estimator (no predictions),

for pi, theta_p, theta_n (round 0), the accuracy of round 0 and of round 1, and the gain of round 1 over
round 0, against the corpus truth (gold, read only to score the intervals). Round-0 estimates use the LLM's
score only (the classifier does not exist yet); round-1 estimates use the LLM's and the classifier's scores.

NAME@VARIANT reads the scores of another annotator run (benchmarks/llm_scores/VARIANT/: 0shot, 1shot = Gemma-3-270M
zero-/one-shot, qwen = Qwen2.5-Coder-1.5B 4-shot), e.g. mr@0shot or selerosa@qwen.

Resumable: one JSON per data set in benchmarks/results/sampling/. Run:
    python benchmarks/sampling_sim.py [--draws 1000] [--datasets rotten_tomatoes,sms_spam,mr,sst2,subj]
    python benchmarks/sampling_sim.py --report   # writes benchmarks/SAMPLING.md tables to stdout
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
OUT = HERE / "results" / "sampling"
N_LAB = 50
METRICS = ("pi", "theta_p", "theta_n", "acc0", "acc1", "gain")


def prepare_demo(demo_dir: Path) -> dict:
    """The demo's case (`silr demo --out DIR`): its corpus gold, Gemma's scores, round 0's labels and round 1's
    (the demo's own refined labels, fixed: only the labeled sample is redrawn). No classifier score (the demo's
    saved score is the stack's, fitted on the demo's own 50 gold labels); "clf" is the LLM score again."""
    import pandas as pd

    lab = pd.read_csv(demo_dir / "labels.csv")
    ann = pd.read_csv(demo_dir / "annotated.csv")
    y = pd.read_csv(demo_dir / "gold.csv")["label"].to_numpy().astype(np.int64)
    return {"y": y, "llm": ann["llm_score"].to_numpy(), "s0": lab["round_0"].to_numpy().astype(np.int64),
            "s1": lab["round_1"].to_numpy().astype(np.int64), "clf": None, "thr": np.array(np.nan)}


def prepare(name: str) -> dict:
    """Corpus truth, scores, pseudo-labels and the classifier's out-of-fold score (cached)."""
    if name.startswith("demo:"):
        return prepare_demo(Path(name[5:]))
    path = OUT / f"prep_{name}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    import torch

    torch.set_num_threads(1)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from silr.annotate.calibrate import choose_threshold
    from silr.bench.data import load_task, task_features
    from silr.bench.runner import _match_scores, load_llm_scores

    base, _, variant = name.partition("@")  # "mr@0shot", "selerosa@qwen": the scores in llm_scores/VARIANT/
    task = load_task(base, max_corpus=2000, max_test=500)
    sc = load_llm_scores(base, HERE / "llm_scores" / variant if variant else HERE / "llm_scores")
    if sc is None:
        raise SystemExit(f"no stored LLM scores for {name!r} under {HERE / 'llm_scores'}")
    cs, ts = _match_scores(task.corpus, sc, "corpus"), _match_scores(task.test, sc, "test")
    med = np.nanmedian(cs)
    cs, ts = np.nan_to_num(cs, nan=med), np.nan_to_num(ts, nan=med)
    yt = task.test["label"].to_numpy()
    thr, _ = choose_threshold("accuracy", cs, ts, yt)
    s0 = (cs > thr).astype(np.int64)
    Xc, _, bb = task_features(task)
    Xc = Xc.toarray() if hasattr(Xc, "toarray") else np.asarray(Xc)
    lr = LogisticRegression(C=1.0, max_iter=2000)
    g = cross_val_predict(lr, Xc, s0, cv=5, method="decision_function")
    out = {"y": task.corpus["label"].to_numpy().astype(np.int64), "llm": cs, "s0": s0, "clf": g,
           "thr": np.array(thr)}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def _paired_boot(c1, c0, rng, B=1000, conf=0.95):
    n = c1.size
    idx = rng.integers(0, n, size=(B, n))
    d = (c1[idx] - c0[idx]).mean(1)
    return float(np.quantile(d, (1 - conf) / 2)), float(np.quantile(d, 1 - (1 - conf) / 2))


def simulate(name: str, draws: int) -> dict:
    import ppi_py

    from silr.priors import PriorEstimationError, estimate_priors
    from silr.sampling import gain_estimate, make_design, prediction_covariates, round_estimates
    from silr.sampling.estimators import accuracy_covariates

    p = prepare(name)
    y, llm, s0, g = p["y"], p["llm"], p["s0"], p["clf"]
    s1 = p["s1"] if "s1" in p else (g > 0).astype(np.int64)
    N = y.size
    truth = {"pi": y.mean(), "theta_p": y[s0 == 1].mean(), "theta_n": y[s0 == 0].mean(),
             "acc0": (y == s0).mean(), "acc1": (y == s1).mean()}
    truth["gain"] = truth["acc1"] - truth["acc0"]
    Q0 = prediction_covariates(llm, None, s0)
    Q1 = prediction_covariates(llm, g, s0)
    arms = ("today", "ppi_py", "silr_uniform", "silr_design", "design_plain")
    rec = {a: {m: [] for m in METRICS} for a in arms}
    fails = {a: 0 for a in arms}
    points = {a: [] for a in arms}  # the gain's point estimate (today: est. accuracy of round 1 - of round 0)
    rng_b = np.random.default_rng(12345)

    def put(arm, m, lo, hi):
        rec[arm][m].append((float(lo), float(hi)))

    def ppi(Y, Yh, Yu):
        lo, hi = ppi_py.ppi_mean_ci(Y.astype(float), Yh, Yu, alpha=0.05)
        return float(np.ravel(lo)[0]), float(np.ravel(hi)[0])

    for it in range(draws):
        rows = np.sort(np.random.default_rng([it, 1]).choice(N, N_LAB, replace=False))
        yl = y[rows]
        # (a) today
        try:
            e0 = estimate_priors(yl, s0[rows], s0.mean(), n_bootstrap=1000, seed=it)
            e1 = estimate_priors(yl, s1[rows], s1.mean(), n_bootstrap=1000, seed=it)
            for m, k in (("pi", "pi"), ("theta_p", "theta_p"), ("theta_n", "theta_n"), ("acc0", "accuracy")):
                put("today", m, e0.intervals[k].low, e0.intervals[k].high)
            put("today", "acc1", e1.intervals["accuracy"].low, e1.intervals["accuracy"].high)
            points["today"].append(e1.accuracy - e0.accuracy)
            put("today", "gain", *_paired_boot((yl == s1[rows]).astype(float), (yl == s0[rows]).astype(float), rng_b))
        except PriorEstimationError:
            fails["today"] += 1
        # (b) ppi_py, one prediction per target (the mean of the guesses)
        q0, q1 = Q0.mean(1), Q1.mean(1)
        put("ppi_py", "pi", *ppi(yl, q0[rows], q0))
        for m, side in (("theta_p", 1), ("theta_n", 0)):
            dom = s0 == side
            rl = rows[dom[rows]]
            if rl.size >= 2:
                put("ppi_py", m, *ppi(y[rl], q0[rl], q0[dom]))
        a0 = accuracy_covariates(q0[:, None], s0)[:, 0]
        a1 = accuracy_covariates(q1[:, None], s1)[:, 0]
        put("ppi_py", "acc0", *ppi((yl == s0[rows]), a0[rows], a0))
        put("ppi_py", "acc1", *ppi((yl == s1[rows]), a1[rows], a1))
        dv = (yl == s1[rows]).astype(float) - (yl == s0[rows])
        ad = accuracy_covariates(q1[:, None], s1)[:, 0] - accuracy_covariates(q1[:, None], s0)[:, 0]
        put("ppi_py", "gain", *ppi(dv, ad[rows], ad))
        points["ppi_py"].append(sum(rec["ppi_py"]["gain"][-1]) / 2)
        # (b') silr's estimator on the uniform sample; (c) on the design's sample
        d = make_design(s0, llm, n=N_LAB, seed=it)
        for arm, des, rws, Qa, Qb in (("silr_uniform", None, rows, Q0, Q1), ("silr_design", d, d.rows, Q0, Q1),
                                      ("design_plain", d, d.rows, None, None)):
            yy = y[rws]
            r0 = round_estimates(yy, rws, s0, des, Qa)
            for m, k in (("pi", "pi"), ("theta_p", "theta_p"), ("theta_n", "theta_n"), ("acc0", "accuracy")):
                put(arm, m, r0[k].low, r0[k].high)
            r1 = round_estimates(yy, rws, s1, des, Qb)
            put(arm, "acc1", r1["accuracy"].low, r1["accuracy"].high)
            ge = gain_estimate(yy, rws, s1, s0, des, Qb)
            put(arm, "gain", ge.low, ge.high)
            points[arm].append(ge.value)
    summary = {"dataset": "demo" if name.startswith("demo:") else name, "draws": draws, "n_labeled": N_LAB, "n_corpus": int(N), "truth": {k: float(v) for k, v in truth.items()},
               "llm_threshold": float(p["thr"]), "failures": fails, "arms": {}}
    for a in arms:
        summary["arms"][a] = {}
        for m in METRICS:
            iv = np.array(rec[a][m]).reshape(-1, 2)
            if not iv.size:
                continue
            cov = np.mean((iv[:, 0] <= truth[m]) & (truth[m] <= iv[:, 1]))
            summary["arms"][a][m] = {"coverage": float(cov), "width": float(np.mean(iv[:, 1] - iv[:, 0])), "n": int(len(iv))}
            if m == "gain":  # how often the interval excludes 0 on the true side / on the wrong side
                sgn = np.sign(truth[m])
                summary["arms"][a][m]["right_sign_excl_0"] = float(np.mean(sgn * iv.min(1) > 0) if sgn > 0 else np.mean(iv.max(1) < 0))
                summary["arms"][a][m]["wrong_sign_excl_0"] = float(np.mean(iv.max(1) < 0) if sgn > 0 else np.mean(iv.min(1) > 0))
                summary["arms"][a][m]["point_wrong_sign"] = float(np.mean(np.sign(points[a]) != sgn))
    return summary


def report() -> str:
    files = sorted(OUT.glob("sim_*.json"))
    res = [json.loads(f.read_text()) for f in files]
    lines = []
    names = {"today": "(a) uniform + bootstrap (today)", "ppi_py": "(b) uniform + PPI++ (ppi_py)",
             "silr_uniform": "(b') uniform + PPI++ (silr, post-stratified)",
             "silr_design": "(c) `silr sample` design + PPI++ (silr)", "design_plain": "(c0) design, no predictions"}
    for r in res:
        t = r["truth"]
        lines.append(f"\n### {r['dataset']} ({r['n_corpus']} rows, {r['draws']} draws, truth: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in t.items()) + ")\n")
        lines.append("| estimator | " + " | ".join(METRICS) + " |")
        lines.append("|---" * (len(METRICS) + 1) + "|")
        base = r["arms"]["today"]
        for a, label in names.items():
            cells = []
            for m in METRICS:
                c = r["arms"][a].get(m)
                if c is None:
                    cells.append("-")
                    continue
                ratio = c["width"] / base[m]["width"] if m in base and base[m]["width"] > 0 else float("nan")
                cells.append(f"{c['coverage']:.3f} / {c['width']:.3f}" + ("" if a == "today" else f" ({ratio:.2f}x)"))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    demo = [r for r in res if r["dataset"] == "demo"]
    res = [r for r in res if r["dataset"] != "demo"]
    for r in demo:
        lines.append("\nDemo case, the gain of round 1 over round 0 (interval excludes 0 on the true side / on the wrong "
                     "side; point estimate of the wrong sign):\n")
        lines.append("| estimator | coverage | width | right sign, excl. 0 | wrong sign, excl. 0 | point of wrong sign |")
        lines.append("|---|---|---|---|---|---|")
        for a, label in names.items():
            g = r["arms"][a]["gain"]
            lines.append(f"| {label} | {g['coverage']:.3f} | {g['width']:.3f} | {g['right_sign_excl_0']:.3f} | "
                         f"{g['wrong_sign_excl_0']:.3f} | {g['point_wrong_sign']:.3f} |")
    # pooled
    lines.append("\n### All benchmark data sets (not the demo): mean coverage / mean width ratio to today\n")
    lines.append("| estimator | " + " | ".join(METRICS) + " |")
    lines.append("|---" * (len(METRICS) + 1) + "|")
    for a, label in names.items():
        cells = []
        for m in METRICS:
            cv = [r["arms"][a][m]["coverage"] for r in res if m in r["arms"][a]]
            rt = [r["arms"][a][m]["width"] / r["arms"]["today"][m]["width"] for r in res if m in r["arms"][a]]
            cells.append(f"{np.mean(cv):.3f} / {np.mean(rt):.2f}x (min cov {np.min(cv):.3f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def oracle_bound(names) -> str:
    """How much narrower could a stratified design make theta_p / theta_n at all? The width of the stratified
    estimator with the *true* within-stratum spreads (gold; a bound no design can beat with these strata) relative
    to a simple random sample of the same 25 rows per side: proportional and Neyman allocation."""
    from silr.sampling.design import stratify

    out = ["| data set | side | bins | proportional / SRS | oracle Neyman / SRS |", "|---|---|---|---|---|"]
    for name in names:
        p = prepare(name)
        y, llm, s0 = p["y"], p["llm"], p["s0"]
        for bins in (3, 5):
            st, _, _ = stratify(s0, llm, bins=bins)
            for side in (1, 0):
                hs = [h for h in range(st.max() + 1) if (s0[st == h] == side).all()]
                N = np.array([np.sum(st == h) for h in hs], dtype=float)
                S = np.array([y[st == h].std() for h in hs])
                W = N / N.sum()
                v_srs = y[s0 == side].var()
                out.append(f"| {name} | theta_{'p' if side else 'n'} | {bins} | {np.sqrt((W * S ** 2).sum() / v_srs):.2f} | "
                           f"{np.sqrt((W * S).sum() ** 2 / v_srs):.2f} |")
    return "\n".join(out)


def oracle_ppi(names) -> str:
    """How much narrower could any prediction-powered estimate of theta be? Within each pseudo-label side, the share
    of gold's variance left after the best function of the predictions (E[y | scores], a gradient-boosted fit on
    *gold*, 5-fold out of fold: an oracle no 50-row estimate can beat), as a width ratio sqrt(1 - R^2) against the
    labeled rows alone: with the LLM score (what round 0 has) and with the pseudo-label classifier's out-of-fold
    score too (trained on the corpus pseudo-labels, no gold; a round-0 estimator could have it)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_predict

    out = ["| data set | side | corpus rows | LLM score | LLM + classifier score |", "|---|---|---|---|---|"]
    for name in names:
        p = prepare(name)
        y, llm, s0, g = p["y"], p["llm"], p["s0"], p["clf"]
        for side in (1, 0):
            m = s0 == side
            yy, cells = y[m], []
            for cols in ([llm[m]], [llm[m], g[m]]):
                f = cross_val_predict(HistGradientBoostingClassifier(max_iter=100, max_depth=3, random_state=0),
                                      np.column_stack(cols), yy, cv=5, method="predict_proba")[:, 1]
                cells.append(f"{np.sqrt(min(np.mean((yy - f) ** 2) / yy.var(), 1.0)):.2f}")
            out.append(f"| {name} | theta_{'p' if side else 'n'} | {int(m.sum())} | {cells[0]} | {cells[1]} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--datasets", default="rotten_tomatoes,sms_spam,mr,sst2,subj")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--oracle", action="store_true", help="print the oracle bound of stratification (gold spreads)")
    ap.add_argument("--oracle-ppi", action="store_true", help="print the oracle bound of prediction-powered estimates")
    a = ap.parse_args(argv)
    if a.report:
        print(report())
        return
    if a.oracle_ppi:
        print(oracle_ppi([n for n in a.datasets.split(",") if not n.startswith("demo:")]))
        return
    if a.oracle:
        print(oracle_bound([n for n in a.datasets.split(",") if not n.startswith("demo:")]))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for name in a.datasets.split(","):
        path = OUT / f"sim_{'demo' if name.startswith('demo:') else name}.json"
        if path.is_file() and not a.force and json.loads(path.read_text()).get("draws") == a.draws:
            print(f"{name}: done", flush=True)
            continue
        t0 = time.time()
        s = simulate(name, a.draws)
        s["seconds"] = time.time() - t0
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(s, indent=1))
        os.replace(tmp, path)
        print(f"{name}: {s['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
