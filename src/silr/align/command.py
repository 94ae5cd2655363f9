"""The ``silr align`` command's work: files in, run folder out."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from silr.align.best_of_n import best_of_n, score_samples
from silr.align.dpo import preference_pairs, train_dpo
from silr.align.policy import load_policy, sample_answers
from silr.align.self_refine import self_refine_answers
from silr.reward import QA_TEMPLATE, RewardModel


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    from silr.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_align(policy: str | os.PathLike, prompts: Sequence[str], out_dir: str | os.PathLike, *,
              reward: RewardModel | None = None, method: str = "best-of-n", n: int = 4, max_new_tokens: int = 64,
              steps: int = 30, save_steps: int = 10, seed: int = 0, batch_size: int = 8,
              learning_rate: float = 5e-5, beta: float = 0.1, lora_r: int = 8, gold: Sequence[Any] | None = None,
              n_labeled: int = 50, progress: bool = True, cache_dir: str | os.PathLike | None = None,
              model=None, tokenizer=None) -> dict:
    """What ``silr align`` does; returns (and writes to ``out_dir/summary.json``) the summary.

    Samples are cached in ``out_dir/samples.jsonl`` (reused when the settings match), pairs in
    ``pairs.jsonl``; DPO checkpoints in ``checkpoints/`` are resumed.
    """
    if method not in ("best-of-n", "dpo", "self-refine"):
        raise ValueError(f"method must be best-of-n, dpo or self-refine, got {method!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if model is None:
        model, tokenizer = load_policy(policy, cache_dir=cache_dir)
    prompts = [str(p) for p in prompts]
    settings = {"policy": str(policy), "n": n, "max_new_tokens": max_new_tokens, "seed": seed,
                "n_prompts": len(prompts), "template": QA_TEMPLATE}
    sfile = out / "samples.jsonl"
    samples = None
    if sfile.exists() and (out / "samples_settings.json").exists():
        if json.loads((out / "samples_settings.json").read_text()) == settings:
            samples = [r["samples"] for r in _read_jsonl(sfile)]
    if samples is None:
        samples = sample_answers(model, tokenizer, prompts, n=n, max_new_tokens=max_new_tokens, seed=seed,
                                 batch_size=batch_size, progress=progress)
        _write_jsonl(sfile, [{"prompt": p, "samples": s} for p, s in zip(prompts, samples)])
        (out / "samples_settings.json").write_text(json.dumps(settings, indent=2))
    summary: dict[str, Any] = {"method": method, **settings, "out": str(out)}

    if method == "self-refine":
        if gold is None:
            raise ValueError("self-refine needs the prompts' gold answers (--answer-col)")
        res = self_refine_answers(model, tokenizer, prompts, gold, samples=samples, n_labeled=n_labeled, seed=seed,
                                  cache_dir=cache_dir, progress=progress)
        rows = [{"prompt": q, "samples": s, "correct": c.tolist(), "llm_score": l.tolist(), "refined_score": r.tolist(),
                 "labeled": bool(lq), "kept": s[int(k)]}
                for q, s, c, l, r, lq, k in zip(res.questions, res.samples, res.correct, res.llm_score,
                                                  res.refined_score, res.labeled_questions, res.picks["silr_refined"])]
        _write_jsonl(out / "self_refine.jsonl", rows)
        summary.update(res.table())
        summary["refine"] = res.refine_summary
    else:
        if reward is None:
            raise ValueError(f"method {method} needs a reward model (--reward RUN_DIR)")
        bon = best_of_n(model, tokenizer, prompts, reward, samples=samples)
        _write_jsonl(out / "best_of_n.jsonl", bon.to_records())
        summary["reward"] = reward.describe()
        summary["before"] = {"reward_first_sample": float(bon.rewards[:, 0].mean()),
                             "reward_all_samples": float(bon.rewards.mean())}
        summary["best_of_n"] = {"reward": float(bon.best_rewards.mean())}
        if method == "dpo":
            pairs = preference_pairs(prompts, samples, bon.rewards)
            pfile = out / "pairs.jsonl"
            if not pfile.exists():
                _write_jsonl(pfile, pairs)
            pairs = _read_jsonl(pfile)
            tuned = train_dpo(model, tokenizer, pairs, out, steps=steps, save_steps=save_steps, seed=seed,
                              learning_rate=learning_rate, beta=beta, lora_r=lora_r, progress=progress)
            after = sample_answers(tuned, tokenizer, prompts, n=1, max_new_tokens=max_new_tokens, seed=seed + 10_000,
                                   batch_size=batch_size, progress=progress)
            Ra = score_samples(reward, prompts, after)
            _write_jsonl(out / "after_dpo.jsonl", [{"prompt": p, "answer": a[0], "reward": float(r[0])}
                                                   for p, a, r in zip(prompts, after, Ra)])
            summary["dpo"] = {"pairs": len(pairs), "steps": steps,
                              "reward_after": float(Ra.mean()), "adapter": str(out / "adapter")}
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
