"""End to end on few-shot Gemma labels (tuning sets only): every K-class benchmark method on the scores of
benchmarks/kclass_fewshot.py, against the same methods on the zero-shot scores (benchmarks/results/kclass/).

The default of ``silr annotate`` / ``silr run`` with a labeled sample is 4 examples, rounded up to the same
number per class: 2 per class for the 3-class sets, 1 for the others, so those runs are read (``shots2`` /
``shots1``). Each cell is the benchmark's: the same Gemma subsample, features, labeled draw (checked against the
stored one) and methods (``kclass_bench.run_corpus_methods`` / ``run_cell``), under ``gemma`` (raw argmax) and
``gemma_c`` (centred); the test rows keep their zero-shot scores (not scored few-shot), so only corpus figures are
read. ``python benchmarks/kclass_fewshot_e2e.py [--show]``; runs in benchmarks/results/kclass_fewshot/e2e/.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
FS = ROOT / "results" / "kclass_fewshot"
OUT = FS / "e2e"
METHODS = ("llm", "lr_labeled", "lr_balanced", "cleanlab", "ovr_binary", "silr_k")


def _runs():
    import kclass_bench as kb

    for p in sorted(glob.glob(str(FS / "*.npz"))):
        name, seed, b, shots = Path(p).stem.split("__")
        K = len(kb._task(name).classes)
        if shots != ("shots2" if K == 3 else "shots1"):
            continue
        yield name, int(seed[1:]), int(b[1:]), Path(p)


def run():
    import torch

    import kclass_bench as kb

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, seed, b, path in _runs():
        task0 = kb._task(name)
        Fc0, Ft0 = kb._features(task0)
        task, Fc, Ft = kb._subset(task0, "gemma", Fc0, Ft0)
        z = np.load(path)
        lp = z["corpus_logp"]
        lpt = kb._llm(task, "gemma", seed, Fc, Ft)[3]  # test rows: zero-shot (not read)
        assert (z["lab"] == np.sort(np.random.default_rng(seed).choice(task.corpus_y.size, b, replace=False))).all()
        for setting in ("gemma", "gemma_c"):
            p = OUT / f"{name}__{setting}__s{seed}__b{b}.json"
            if p.exists():
                continue
            mu = lp.mean(0, keepdims=True) if setting == "gemma_c" else 0.0
            llm = ((lp - mu).argmax(1), (lpt - mu).argmax(1), lp, lpt)
            t0 = time.time()
            shared = kb.run_corpus_methods(kb._with_ev(Fc, lp), kb._with_ev(Ft, lpt), llm[0], seed)
            try:
                rec = kb.run_cell(task, setting, seed, b, Fc, Ft, llm, shared)
            except ValueError as e:  # the refiner's K-column llm_score with fewer classes named (as zero-shot)
                print(f"{p.name}: not run: {e}", flush=True)
                continue
            rec.update(commit=kb._commit(), seconds=round(time.time() - t0, 1), scores=str(path.name))
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(rec, indent=1))
            os.replace(tmp, p)
            print(f"{p.name}: done [{rec['seconds']}s]", flush=True)


def show(metric="unlabeled_acc", held_out=False):
    """The tuning sets' cells, or (``held_out``) the held-out sets' (read only after the default is fixed)."""
    import kclass_tune as kt

    rows = {}
    for p in sorted(glob.glob(str(OUT / "*.json"))):
        r = json.loads(Path(p).read_text())
        if (r["task"] in kt.TUNING) == held_out:
            continue
        zp = ROOT / "results" / "kclass" / Path(p).name
        if not zp.exists():
            continue
        z = json.loads(zp.read_text())
        rows.setdefault((r["task"], r["setting"], r["budget"]), []).append((z, r))
    print("| set | setting | seeds | LLM zero -> few | best baseline zero -> few | silr K-class zero -> few | "
          "silr - best, zero -> few |")
    print("|---|---|---|---|---|---|---|")
    gains = []
    for (t, s, b), pairs in sorted(rows.items()):
        def mean(i, m):
            return float(np.mean([pr[i][m][metric] for pr in pairs]))

        base = [m for m in METHODS if m != "silr_k"]
        bz, bf = max(base, key=lambda m: mean(0, m)), max(base, key=lambda m: mean(1, m))
        sz, sf = mean(0, "silr_k"), mean(1, "silr_k")
        gains.append((sf - sz, mean(1, "llm") - mean(0, "llm"), (sf - mean(1, bf)) - (sz - mean(0, bz))))
        print(f"| {t} | {s} | {len(pairs)} | {mean(0, 'llm'):.3f} -> {mean(1, 'llm'):.3f} | "
              f"{mean(0, bz):.3f} ({bz}) -> {mean(1, bf):.3f} ({bf}) | {sz:.3f} -> {sf:.3f} | "
              f"{100 * (sz - mean(0, bz)):+.1f} -> {100 * (sf - mean(1, bf)):+.1f} |")
    if gains:
        g = np.array(gains)
        print(f"\n{len(g)} cells: silr K-class {100 * g[:, 0].mean():+.1f} points on average (up in "
              f"{int((g[:, 0] > 0).sum())}), the LLM's labels {100 * g[:, 1].mean():+.1f}, silr's margin over the best "
              f"baseline {100 * g[:, 2].mean():+.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--held-out", action="store_true", help="--show: the held-out sets' cells")
    a = ap.parse_args()
    show(held_out=a.held_out) if a.show else run()
