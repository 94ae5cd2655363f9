"""Stages that use the reward models on Gemma-3-270M as a policy: ``bon``, ``dposamples``, ``dpo``, ``selfrefine``."""

from __future__ import annotations

import json
import time

from silr.bench.align_safety.common import DATA, WORK, _boot_ci, _save_summary, load_rewards, log


# ------------------------------------------------------------------------------------------ best of n
def heldout_prompts(n_prompts: int, max_chars: int = 200, seed: int = 0) -> list[str]:
    import re

    import numpy as np

    from silr.corpora import load_shared

    test = load_shared(DATA, "test")
    ps = [m.group(1).strip() for m in (re.match(r"^# Prompt: (.*?)\n# Response: ", t, re.S) for t in test["text"]) if m]
    ps = [p for p in dict.fromkeys(ps) if len(p) <= max_chars]
    rng = np.random.default_rng(seed)
    return [ps[i] for i in rng.permutation(len(ps))[:n_prompts]]



def _policy():
    import torch

    torch.set_num_threads(2)
    from silr.align import load_policy

    return load_policy("gemma-3-270m")


def stage_bon(args) -> None:
    import numpy as np

    from silr.align import pick_best, sample_answers, score_samples

    prompts = heldout_prompts(args.n_prompts)
    model, tok = _policy()
    rms = load_rewards()
    res = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        f = WORK / f"samples_seed{seed}_p{len(prompts)}_t{args.max_new_tokens}.json"
        if f.exists():
            samples = json.loads(f.read_text())["samples"]
        else:
            t0 = time.time()
            samples = sample_answers(model, tok, prompts, n=args.n, max_new_tokens=args.max_new_tokens, seed=seed,
                                     batch_size=8, progress=False, top_p=args.top_p)
            f.write_text(json.dumps({"prompts": prompts, "samples": samples, "seconds": round(time.time() - t0, 1)}))
            log(f"seed {seed}: sampled {args.n} x {len(prompts)} answers in {time.time() - t0:.0f}s")
        R = {k: score_samples(rm, prompts, samples) for k, rm in rms.items()}
        safe = R["judge"] > 0  # the judge's verdict on every sample
        pj = 1 / (1 + np.exp(-R["judge"]))
        rows = np.arange(len(prompts))
        picks = {"policy_first_sample": np.zeros(len(prompts), dtype=int),
                 "bon_silr": pick_best(R["silr"]), "bon_vanilla": pick_best(R["vanilla"]),
                 "bon_judge_oracle": pick_best(R["judge"])}
        out = {}
        for k, p in picks.items():
            v = safe[rows, p]
            out[k] = {"judge_safe_rate": float(v.mean()), "ci95": _boot_ci(v, seed=seed),
                      "judge_p_safe": float(pj[rows, p].mean())}
        out["policy_all_samples"] = {"judge_safe_rate": float(safe.mean()), "judge_p_safe": float(pj.mean())}
        out["agreement_silr_vanilla_pick"] = float((picks["bon_silr"] == picks["bon_vanilla"]).mean())
        out["empty_answers"] = int(sum(a == "" for s in samples for a in s))
        res[f"seed{seed}"] = out
        log(f"seed {seed}: " + ", ".join(f"{k} {v['judge_safe_rate']:.3f}" for k, v in out.items() if isinstance(v, dict)))
    _save_summary({f"bon_p{len(prompts)}": {"n_prompts": len(prompts), "n": args.n,
                                             "max_new_tokens": args.max_new_tokens, "top_p": args.top_p,
                                             "per_seed": res}})


# ------------------------------------------------------------------------------------------ DPO
def stage_dpo(args) -> None:
    import numpy as np

    from silr.align import preference_pairs, sample_answers, score_samples, train_dpo

    prompts = heldout_prompts(args.n_prompts)
    # DPO pairs come from the policy's own answers to train-split prompts; evaluation prompts stay unseen
    train_prompts = train_prompts_for_dpo(args.n_dpo_prompts)
    rms = load_rewards()
    res = {}
    samples = stage_dposamples(args)
    # the untouched policy, sampled exactly like the tuned ones below (same prompts, n, tokens, seed)
    model, tok = _policy()
    t0 = time.time()
    before = sample_answers(model, tok, prompts, n=2, max_new_tokens=args.max_new_tokens, seed=0, batch_size=8,
                            progress=False)
    safe0 = (score_samples(rms["judge"], prompts, before) > 0).ravel()
    res["untouched"] = {"judge_safe_rate": float(safe0.mean()), "ci95": _boot_ci(safe0),
                        "sample_seconds": round(time.time() - t0, 1)}
    log(f"untouched policy: {res['untouched']}")
    for k in args.dpo_rewards.split(","):
        model, tok = _policy()
        R = score_samples(rms[k], train_prompts, samples)
        pairs = preference_pairs(train_prompts, samples, R)
        t0 = time.time()
        tuned = train_dpo(model, tok, pairs, WORK / f"dpo_{k}", steps=args.dpo_steps, learning_rate=args.dpo_lr,
                          beta=0.1, batch_size=2, max_length=160, save_steps=5, seed=0, progress=False)
        t_train = time.time() - t0
        after = sample_answers(tuned, tok, prompts, n=2, max_new_tokens=args.max_new_tokens, seed=0, batch_size=8,
                               progress=False)
        Ra = {kk: score_samples(rm, prompts, after) for kk, rm in rms.items()}
        safe = (Ra["judge"] > 0).ravel()
        # pairs' judge agreement: how often the reward's chosen answer is safer (by the judge) than its rejected
        Rj = score_samples(rms["judge"], train_prompts, samples)
        agree = [Rj[i, int(np.argmax(R[i]))] > Rj[i, int(np.argmin(R[i]))] for i in range(len(samples))
                 if samples[i][int(np.argmax(R[i]))] != samples[i][int(np.argmin(R[i]))]]
        res[k] = {"pairs": len(pairs), "steps": args.dpo_steps, "train_seconds": round(t_train, 1),
                  "judge_safe_rate_after": float(safe.mean()), "ci95": _boot_ci(safe),
                  "own_reward_after": float(Ra[k].mean()), "pairs_chosen_safer_by_judge": float(np.mean(agree))}
        log(f"DPO with {k}: {res[k]}")
    for k, v in res.items():
        _save_summary({f"dpo_{k}": {"n_train_prompts": len(train_prompts), "n_eval_prompts": len(prompts),
                                    "eval_samples_per_prompt": 2, "max_new_tokens": args.max_new_tokens,
                                    "lr": args.dpo_lr, **v}})


def stage_dposamples(args):
    """The policy's n answers to train-split prompts (the DPO pairs' source), cached."""
    from silr.align import sample_answers

    f = WORK / "dpo_train_samples.json"
    if f.exists():
        return json.loads(f.read_text())["samples"]
    train_prompts = train_prompts_for_dpo(args.n_dpo_prompts)
    model, tok = _policy()
    t0 = time.time()
    samples = sample_answers(model, tok, train_prompts, n=args.n, max_new_tokens=args.max_new_tokens,
                             seed=100, batch_size=8, progress=False)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"prompts": train_prompts, "samples": samples, "seconds": round(time.time() - t0, 1)}))
    tmp.replace(f)
    log(f"DPO train samples in {time.time() - t0:.0f}s")
    return samples


def train_prompts_for_dpo(n: int, seed: int = 0) -> list[str]:
    import re

    import numpy as np

    from silr.corpora import load_shared

    tr = load_shared(DATA, "train")
    ps = [m.group(1).strip() for m in (re.match(r"^# Prompt: (.*?)\n# Response: ", t, re.S) for t in tr["text"]) if m]
    ps = [p for p in dict.fromkeys(ps) if len(p) <= 200]
    rng = np.random.default_rng(seed)
    return [ps[i] for i in rng.permutation(len(ps))[:n]]


# ------------------------------------------------------------------------------------------ self-refinement
def stage_selfrefine(args) -> None:
    import numpy as np

    from silr.align import sample_answers, self_refine_answers

    rng = np.random.default_rng(0)
    qs, gold = [], []
    for _ in range(args.sr_questions):
        a, b = int(rng.integers(1, 21)), int(rng.integers(1, 21))
        qs.append(f"What is {a} + {b}?")
        gold.append(a + b)
    model, tok = _policy()
    t0 = time.time()
    # a one-shot prefix in the question template (a base model needs to see the answer format)
    f = WORK / f"selfrefine_samples_{len(qs)}.json"
    if f.exists():
        d = json.loads(f.read_text())
        samples, t_sample = d["samples"], d["seconds"]
    else:
        samples = sample_answers(model, tok, qs, n=args.n, max_new_tokens=5, seed=0, batch_size=16, progress=False,
                                 template="Question: What is 3 + 4?\nAnswer: 7\n\nQuestion: {prompt}\nAnswer:",
                                 stops=("\n",))
        t_sample = time.time() - t0
        f.write_text(json.dumps({"questions": qs, "gold": gold, "samples": samples, "seconds": round(t_sample, 1)}))
    from silr.align import numeric_check

    C = np.array([[numeric_check(a, g) for a in s] for s, g in zip(samples, gold)])
    log(f"answers correct: {C.mean():.3f} (any of {args.n}: {C.any(1).mean():.3f}); sampling {t_sample:.0f}s")
    res = self_refine_answers(model, tok, qs, gold, samples=samples, n_labeled=args.sr_labeled, seed=0,
                              progress=False)
    out = {"n_questions": len(qs), "n": args.n, "n_labeled_answers": int(res.labeled_questions.sum()) * args.n,
           "sample_seconds": round(t_sample, 1), "seconds": round(res.seconds, 1), **res.table(),
           "llm_threshold": res.refine_summary.get("llm_threshold")}
    ev = ~res.labeled_questions
    for k, p in res.picks.items():
        v = res.correct[np.arange(len(qs)), p][ev]
        out.setdefault("ci95", {})[k] = _boot_ci(v)
    _save_summary({"selfrefine": out})
    log(json.dumps(out, indent=1, default=str))
