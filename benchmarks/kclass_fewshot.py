"""Few-shot K-class prompts for Gemma-3-270M (silr.multiclass.shots) against the zero-shot scores of the K-class
benchmark, on the tuning sets (with --held-out, after the default was fixed on them, on the held-out sets too).

For each set and seed: the benchmark's Gemma subsample (benchmarks/results/kclass_gemma/<set>.npz) and its labeled
draw (``budget`` rows, as kclass_bench draws them); the corpus rows are scored again with ``shots`` examples from the
labeled rows (rounded up to the same number per class; an example's own text labelled without itself), with the
zero-shot instruction and label words unchanged. Stored per run: the LLM labels' accuracy on the corpus rows
outside the labeled budget, raw argmax and centred (``--center``), zero-shot and few-shot; an evaluation with the
corpus gold of a tuning set (no run reads it), and the few-shot scores themselves (``.npz`` beside it, for
benchmarks/kclass_fewshot_e2e.py). Resumable: one JSON and one ``.npz`` per (set, seed, budget, shots) under
benchmarks/results/kclass_fewshot/.
``python benchmarks/kclass_fewshot.py --tasks newsgroups6 amazon3 --shots 1`` (``--shots 1``: one per class).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "results" / "kclass_fewshot"


def _acc(lp, y, keep):
    return float(np.mean(lp.argmax(1)[keep] == y[keep]))


def run(tasks, seeds, budgets, shots, max_text_tokens=96, held_out=False, quiet=False):
    import torch

    import kclass_bench as kb
    import kclass_gemma as kg
    import kclass_tune as kt
    from silr.annotate.local import LocalLMScorer
    from silr.multiclass.annotate import center_scores, kclass_scores, kprompt_from_words
    from silr.multiclass.shots import KShotPlan, score_by_plan

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    scorer = LocalLMScorer(batch_size=8, max_text_tokens=max_text_tokens)
    for name in tasks:
        if (name in kt.TUNING) == held_out:
            raise SystemExit(f"{name}: {'--held-out takes the held-out sets' if held_out else 'tuning runs only on the tuning sets'}"
                             f" (tuning: {', '.join(kt.TUNING)})")
        task0 = kb._task(name)
        Fc0, Ft0 = kb._features(task0)
        task, _, _ = kb._subset(task0, "gemma", Fc0, Ft0)
        z = np.load(kg.OUT / f"{name}.npz")
        lp0 = z["corpus_logp"]
        y = task.corpus_y
        texts = list(task.corpus_text)
        words = list(task.classes)
        spec = kprompt_from_words(words, kg.INSTRUCTIONS[name])
        for seed in seeds:
            for b in budgets:
                p = OUT / f"{name}__s{seed}__b{b}__shots{shots}.json"
                if p.exists() and p.with_suffix(".npz").exists():
                    continue
                lab = np.sort(np.random.default_rng(seed).choice(y.size, b, replace=False))
                keep = np.ones(y.size, dtype=bool)
                keep[lab] = False
                t0 = time.time()
                plan = KShotPlan(spec, [texts[i] for i in lab], [words[c] for c in y[lab]], shots=shots * len(words),
                                 seed=seed)
                lp = score_by_plan(lambda ts, pr, cb: kclass_scores(scorer, ts, pr, on_batch=cb), texts, plan, spec,
                                   len(words))[0]
                rec = {"task": name, "seed": seed, "budget": b, "shots_per_class": plan.per_class,
                       "examples": len(plan.examples), "notes": plan.notes,
                       "zero_raw": _acc(lp0, y, keep), "zero_centred": _acc(center_scores(lp0), y, keep),
                       "few_raw": _acc(lp, y, keep), "few_centred": _acc(center_scores(lp), y, keep),
                       "seconds": round(time.time() - t0, 1)}
                np.savez(str(p.with_suffix("")) + ".tmp.npz", corpus_logp=lp, lab=lab)  # the scores, for end-to-end runs
                os.replace(str(p.with_suffix("")) + ".tmp.npz", p.with_suffix(".npz"))
                tmp = p.with_suffix(".tmp")
                tmp.write_text(json.dumps(rec))
                os.replace(tmp, p)
                print(f"{p.name}: done [{rec['seconds']}s]" if quiet else json.dumps(rec), flush=True)


def show():
    import glob

    rows = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(OUT / "*.json")))]
    for r in rows:
        print(f"{r['task']:12s} s{r['seed']} b{r['budget']} {r['examples']:2d} examples: raw {r['zero_raw']:.3f} -> "
              f"{r['few_raw']:.3f}, centred {r['zero_centred']:.3f} -> {r['few_centred']:.3f} [{r['seconds']}s]")
    if rows:
        for k in ("raw", "centred"):
            d = [r[f"few_{k}"] - r[f"zero_{k}"] for r in rows]
            print(f"{k}: mean change {np.mean(d):+.4f} over {len(d)} runs, {sum(x > 0 for x in d)} up")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=["newsgroups6", "reuters_r8", "reuters6x", "amazon3", "movies3",
                                                    "nyt3", "tweets3"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--budgets", nargs="*", type=int, default=[50])
    ap.add_argument("--shots", type=int, default=1, help="examples per class")
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--held-out", action="store_true",
                    help="score held-out sets (an evaluation, after the default is fixed on the tuning sets)")
    ap.add_argument("--quiet", action="store_true", help="log progress without accuracies")
    a = ap.parse_args()
    show() if a.show else run(a.tasks, a.seeds, a.budgets, a.shots, held_out=a.held_out, quiet=a.quiet)
