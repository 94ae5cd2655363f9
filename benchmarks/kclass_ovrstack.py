"""Tuning item 8 (issue 18, seventh version): per-class (one-vs-rest) stacks as the K-class hand-back's stack,
on the tuning sets only. Diagnosis, not a run of silr: each cell's gold is read to score the candidates.

For each cell (tuning set, setting, seed, budget; the inputs of benchmarks/kclass_bench.py) the K-class refiner is
fitted with the default of the fifth version (kclass_tune variant ``cal01_full01``) and, from its rounds, these
candidates are built and scored on the corpus rows outside the labeled budget:

- ``ovr_lp``: for each class a logistic regression (C=1, standardised inputs) of "gold == c" on the labeled rows
  over (the LLM's log-odds of c against the rest, or its one-hot label without scores; the binary probe's score
  for c, out of fold on the labeled rows), the argmax of the K probabilities: what one-vs-rest's binary refiners
  hand back when their rounds do not start;
- ``ovr_lpz``: the same plus the K-class rounds' refined score of c; ``ovr_lz``: LLM and refined score only;
- ``kstack_ovrprobe``: the default stack with the K binary probes' scores in place of the multinomial probe;
- ``sel_<x>``: the anchored hand-back between the (calibrated) LLM labels and ``<x>`` (0.75 of 1000 paired draws,
  out-of-fold correctness on the labeled rows), as the default does with its stack;
- ``final``: the default's hand-back; ``ovr_baseline``: benchmarks/kclass_bench.py's one-vs-rest baseline.

``python benchmarks/kclass_ovrstack.py amazon3:gemma_c movies3:sim60 ...`` appends one JSON line per cell and
seed to benchmarks/results/kclass_ovrstack/runs.jsonl (run once on engine 1cc5c47, 138 lines).
"""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kclass_bench as kb  # noqa: E402
import kclass_tune as kt  # noqa: E402

import silr.multiclass.loop as loop  # noqa: E402
from silr.multiclass.stack import SharedStack, llm_evidence, oof  # noqa: E402
from silr.selection.candidates import probe_scores  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore")
RUNS = Path(__file__).resolve().parent / "results" / "kclass_ovrstack" / "runs.jsonl"
out = open(RUNS, "a")


def ovr_stack(cols_fn, y_lab, lab, K, n):
    """per class LR(C=1) of (y==c) on standardised columns; argmax of probabilities. returns corpus pred, oof pred"""
    P = np.zeros((n, K)); Pl = np.zeros((lab.size, K))
    folds = list(KFold(10, shuffle=True, random_state=0).split(lab))
    for c in range(K):
        F = cols_fn(c)
        mu, sd = F.mean(0), F.std(0); sd[sd == 0] = 1
        F = (F - mu) / sd
        yc = (y_lab == c).astype(int)
        if yc.min() == yc.max():
            P[:, c] = yc[0]; Pl[:, c] = yc[0]; continue
        m = LogisticRegression(C=1.0).fit(F[lab], yc)
        P[:, c] = m.predict_proba(F)[:, 1]
        for tr, te in folds:
            if yc[tr].min() == yc[tr].max():
                Pl[te, c] = yc[tr][0]; continue
            Pl[te, c] = LogisticRegression(C=1.0).fit(F[lab][tr], yc[tr]).predict_proba(F[lab][te])[:, 1]
    return P.argmax(1), Pl.argmax(1)
for cell in sys.argv[1:]:
    tname, setting = cell.split(':')
    task0 = kb._task(tname); Fc0, Ft0 = kb._features(task0)
    task, Fc, Ft = kb._subset(task0, setting, Fc0, Ft0)
    y = task.corpus_y; K = len(task.classes); n = y.size
    for seed in (0, 1, 2):
        s, st, lp, lpt = kb._llm(task, setting, seed, Fc, Ft)
        for b in (50, 100):
            t0 = time.time()
            lab = np.sort(np.random.default_rng(seed).choice(n, b, replace=False)); y_lab = y[lab]
            cap = {}
            real = loop._hand_back
            def spy(*a, **k):
                cap['a'] = a; return real(*a, **k)
            loop._hand_back = spy
            try:
                f = kt.fit_variant(Fc, s, lab, y_lab, K, dict(kt.VARIANTS['cal01_full01']), seed, llm=lp)
            finally:
                loop._hand_back = real
            X, labels, lab_labels, estimates, records, learners, scales, aggs = cap['a'][:8]
            best_r = 1 + int(np.argmax([e.accuracy for e in estimates[1:]])) if len(labels) > 1 else 0
            Z = aggs[best_r] if best_r else None
            E = llm_evidence(lp, s, K)
            LO = (np.stack([lp[:, c] - np.logaddexp.reduce(np.delete(lp, c, 1), 1) for c in range(K)], 1)
                  if lp is not None else np.eye(K)[s])
            PR = np.zeros((n, K)); PRl = np.zeros((b, K))
            for c in range(K):
                yc = (y_lab == c).astype(int)
                if yc.min() == yc.max(): continue
                sc, so, _ = probe_scores(Fc[lab], yc, Fc)
                PR[:, c] = sc; PRl[:, c] = so
            PRx = PR.copy(); PRx[lab] = PRl
            unl = np.ones(n, bool); unl[lab] = False
            acc = lambda p: float(np.mean((p == y)[unl]))
            ovp, _, _, _ = kb.run_ovr(K, s, st, lp, lpt, np.where(np.isin(np.arange(n), lab), y, -1), Fc, Ft, seed)
            res = {"cell": cell, "seed": seed, "b": b, "llm": acc(s), "final": acc(f.transduction), "source": f.source,
                   "cands": {k: acc(v) for k, v in f.extra["candidate_labels"].items()}}
            from silr.selection.candidates import Candidate, select
            llm_c = Candidate("llm", labels[0], lab_labels[0] == y_lab, "")
            def rec(name, pr):
                p, pl = pr
                res[name] = acc(p); res[name + "_lab"] = float(np.mean(pl == y_lab))
                ch, _, _ = select([llm_c, Candidate("stack", p, pl == y_lab, "")], "llm", confidence=0.75,
                                  n_bootstrap=1000, seed=seed)
                res["sel_" + name] = acc(ch.corpus_labels)
            rec("ovr_lp", ovr_stack(lambda c: np.column_stack([LO[:, c], PRx[:, c]]), y_lab, lab, K, n))
            if Z is not None:
                rec("ovr_lpz", ovr_stack(lambda c: np.column_stack([LO[:, c], PRx[:, c], Z[:, c]]), y_lab, lab, K, n))
                rec("ovr_lz", ovr_stack(lambda c: np.column_stack([LO[:, c], Z[:, c]]), y_lab, lab, K, n))
            res["ovr_baseline"] = acc(ovp)
            if Z is not None:
                mk = lambda: SharedStack(bias_l2=0.1, K=K, llm_l2=0.1, llm_mode="full")
                PRc = PRx - PRx.mean(1, keepdims=True)
                Fk = np.hstack([E, Z, PRc])
                sm = mk().fit(Fk[lab], y_lab)
                rec("kstack_ovrprobe", (sm.predict(Fk), oof(Fk[lab], y_lab, mk, K, seed)))
            res["lab_llm"] = float(np.mean(lab_labels[0] == y_lab))
            res["sec"] = round(time.time() - t0, 1)
            print(json.dumps(res), flush=True); out.write(json.dumps(res) + "\n"); out.flush()
