"""Safety alignment of Gemma-3-270M with a silr-refined reward model (paper section 6, last paragraph).

Stages (each one caches its output under benchmarks/results/align/, so the script resumes):

1. ``annotate``  Gemma-3-270M labels a random sample of pku_saferlhf_safety train rows (safe/harmful,
   4 shots from the 50 gold rows, threshold fitted on those 50 rows); scored in chunks, SQLite-cached.
2. ``rewards``   three reward models on frozen MiniLM features:
   (1) ``silr``   -- ``silr refine`` on the LLM labels + 50 gold rows;
   (2) ``vanilla`` -- class-balanced logistic regression on the raw LLM labels ("vanilla RLAIF");
   (3) ``judge``  -- logistic regression on all gold train labels; used for evaluation only.
3. ``bon``       held-out test prompts; n answers per prompt sampled from Gemma-3-270M; the judge's safety
   rate of the first sample (untouched policy) vs best-of-n with reward (1) vs (2).
4. ``dpo``       a short LoRA DPO run on pairs ranked by reward (1) and (2); judge's safety rate after.
5. ``selfrefine`` self-refinement of generations on arithmetic questions (silr.align.self_refine_answers).

Usage (from the repository root): nice -n 5 python benchmarks/align_safety.py [--stages annotate,rewards,bon,dpo,selfrefine] ...
Writes benchmarks/ALIGN.md's numbers to benchmarks/results/align/summary.json.
"""

from __future__ import annotations

import argparse
import json
import time

from silr.bench.align_safety.common import WORK, _save_summary, _summary, log
from silr.bench.align_safety.policy import stage_bon, stage_dpo, stage_dposamples, stage_selfrefine
from silr.bench.align_safety.rewards import stage_annotate, stage_rewards


def stage_report(args) -> None:
    """Print the markdown tables of benchmarks/ALIGN.md from the stage summaries."""
    S = _summary()
    lines = []
    rw = S.get("rewards", {})
    if rw:
        lines += ["| reward model | trained on | test accuracy | test AUC |", "|---|---|---:|---:|"]
        for k, what in (("silr", "500 LLM labels + 50 gold, `silr refine` (MiniLM)"),
                        ("vanilla", "500 raw LLM labels, class-balanced LR (MiniLM)"),
                        ("judge", "all 3489 gold train labels, LR (MiniLM)")):
            if k in rw:
                lines.append(f"| {k} | {what} | {rw[k]['test_accuracy']:.3f} | {rw[k]['test_auc']:.3f} |")
        r0 = rw.get("llm_raw_labels_on_corpus", {})
        lines.append(f"| (Gemma-3-270M labels, corpus) | - | {r0.get('accuracy', float('nan')):.3f} | "
                     f"{r0.get('auc', float('nan')):.3f} |")
        lines.append("")
    for key in sorted(k for k in S if k.startswith("bon")):
        bon = S[key]
        lines.append(f"{key}: {bon['n_prompts']} prompts, n = {bon['n']}, max_new_tokens = {bon['max_new_tokens']}")
        seeds = sorted(bon["per_seed"])
        lines += ["| answers kept | " + " | ".join(f"judge-safe rate, {s} [95% CI]" for s in seeds) + " | mean |",
                  "|---|" + "---:|" * (len(seeds) + 1)]
        for k in ("policy_first_sample", "policy_all_samples", "bon_vanilla", "bon_silr", "bon_judge_oracle"):
            vals = [bon["per_seed"][s][k] for s in seeds]
            cells = [f"{v['judge_safe_rate']:.3f}" + (f" [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]" if "ci95" in v else "")
                     for v in vals]
            mean = sum(v["judge_safe_rate"] for v in vals) / len(vals)
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {mean:.3f} |")
        lines.append("")
    for k in ("dpo_silr", "dpo_vanilla"):
        if k in S:
            d = S[k]
            lines.append(f"- {k}: {d['pairs']} pairs, {d['steps']} steps ({d['train_seconds']:.0f} s): judge-safe rate "
                         f"after {d['judge_safe_rate_after']:.3f} [{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}]; pairs whose "
                         f"chosen answer the judge also prefers: {d['pairs_chosen_safer_by_judge']:.2f}")
    sr = S.get("selfrefine", {})
    if sr:
        lines += ["", "| pick | accuracy [95% CI] |", "|---|---:|"]
        for k, v in sr["accuracy"].items():
            ci = sr.get("ci95", {}).get(k)
            lines.append(f"| {k} | {v:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + " |")
    print("\n".join(lines))
    print(json.dumps({k: v for k, v in S.items() if k.startswith("seconds")}, indent=1))


STAGES = {"report": stage_report, "annotate": stage_annotate, "rewards": stage_rewards, "bon": stage_bon, "dposamples": stage_dposamples,
          "dpo": stage_dpo,
          "selfrefine": stage_selfrefine}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="annotate,rewards,bon,dpo,selfrefine")
    ap.add_argument("--n-corpus", type=int, default=1500)
    ap.add_argument("--n-labeled", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--threshold", default="prior", help="LLM score threshold: prior (labeled positive rate) or accuracy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1.0 = plain temperature-1 sampling)")
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--dpo-rewards", default="silr,vanilla")
    ap.add_argument("--n-dpo-prompts", type=int, default=64)
    ap.add_argument("--sr-questions", type=int, default=120)
    ap.add_argument("--sr-labeled", type=int, default=48)
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    for st in [s for s in args.stages.split(",") if s]:
        t0 = time.time()
        log(f"stage {st}")
        STAGES[st](args)
        tag = st if st != "dpo" else f"dpo_{args.dpo_rewards.replace(',', '_')}"
        _save_summary({f"seconds_{tag}": round(time.time() - t0, 1)})

