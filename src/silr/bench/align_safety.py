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
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The benchmarks folder (prompts, results/align); the thin caller benchmarks/align_safety.py sets it.
HERE = Path(os.environ.get("SILR_BENCH_DIR", "benchmarks")).resolve()
WORK = HERE / "results" / "align"
DATA = "pku_saferlhf_safety"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _summary() -> dict:
    """All stages' results (each stage writes its own summary_<key>.json, so stages may run in parallel)."""
    out = {}
    for p in sorted(WORK.glob("summary_*.json")):
        out.update(json.loads(p.read_text()))
    return out


def _save_summary(upd: dict) -> None:
    for k, v in upd.items():
        (WORK / f"summary_{k}.json").write_text(json.dumps({k: v}, indent=2))


def split_rows(n_corpus: int, n_labeled: int, seed: int = 0):
    """Corpus = the first ``n_corpus`` rows of a fixed permutation of train; gold = its first ``n_labeled``."""
    import numpy as np

    from silr.corpora import load_shared

    train = load_shared(DATA, "train")
    perm = np.random.default_rng(seed).permutation(len(train))
    corpus = train.iloc[perm[:n_corpus]].reset_index(drop=True)
    labeled = corpus.iloc[:n_labeled].reset_index(drop=True)
    return train, corpus, labeled


def stage_annotate(args) -> None:
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import load_prompt
    from silr.annotate.run import annotate_frame

    _, corpus, labeled = split_rows(args.n_corpus, args.n_labeled)
    spec = load_prompt(HERE / "prompts" / f"{DATA}.toml")
    scorer = LocalLMScorer("gemma-3-270m", batch_size=16)
    cache = WORK / "annotations.sqlite"
    frames, rec = [], None
    t0 = time.time()
    for start in range(0, len(corpus), args.chunk):
        part = corpus.iloc[start : start + args.chunk]
        out, rec = annotate_frame(part, "text", scorer, spec, labeled=labeled, shots=4, threshold=args.threshold,
                                  progress=False, cache=cache, seed=0)
        frames.append(out)
        log(f"annotate {start + len(part)}/{len(corpus)} ({time.time() - t0:.0f}s)")
    allf = pd.concat(frames, ignore_index=True)
    # one threshold for all chunks (fitted on the 50 gold rows): take it from the last record
    thr = float(rec["threshold"]["value"])
    allf["pseudo_label"] = (allf["llm_score"] > thr).astype(int)
    allf.to_csv(WORK / "corpus_annotated.csv", index=False)
    labeled.to_csv(WORK / "labeled.csv", index=False)
    acc = float((allf["pseudo_label"] == allf["label"]).mean())
    _save_summary({"annotate": {"n_corpus": len(allf), "n_labeled": len(labeled), "threshold": thr,
                                "llm_label_accuracy_on_corpus": acc, "positive_rate": float(allf.pseudo_label.mean()),
                                "seconds": round(time.time() - t0, 1), "threshold_record": rec["threshold"]}})
    log(f"LLM label accuracy on the corpus: {acc:.3f}")


# ------------------------------------------------------------------------------------------ reward models
def _minilm():
    from silr.backbones import get_backbone

    return get_backbone("minilm", progress=False)


class _LR:
    """A logistic regression head (decision_function / predict_proba) saved as JSON."""

    def __init__(self, coef, intercept):
        import numpy as np

        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def decision_function(self, X):
        import numpy as np

        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def predict_proba(self, X):
        import numpy as np

        p = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])


def _fit_lr(X, y, balanced: bool, C: float = 1.0) -> _LR:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=3000, class_weight="balanced" if balanced else None).fit(X, y)
    return _LR(lr.coef_[0], lr.intercept_[0])


def load_rewards():
    """{'silr', 'vanilla', 'judge'} -> RewardModel (reward = higher for 'safe', the data's label 1)."""
    from silr.reward import RewardModel

    bb = _minilm()
    out = {"silr": RewardModel.from_run(WORK / "reward_silr")}
    for k in ("vanilla", "judge"):
        d = json.loads((WORK / f"reward_{k}.json").read_text())
        out[k] = RewardModel(bb, _LR(d["coef"], d["intercept"]), source=f"reward_{k}.json")
    return out


def stage_rewards(args) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from silr.corpora import load_shared
    from silr.inputs import RefineInputs
    from silr.run_folder import write_run
    from silr.texts import refine_texts

    corpus = pd.read_csv(WORK / "corpus_annotated.csv")
    labeled = pd.read_csv(WORK / "labeled.csv")
    pseudo = corpus["pseudo_label"].to_numpy().astype(np.int8)
    lab_pseudo = pseudo[: len(labeled)]  # the labeled rows are the corpus's first rows
    assert (corpus["text"].iloc[: len(labeled)].to_numpy() == labeled["text"].to_numpy()).all()
    t0 = time.time()
    inputs = RefineInputs(corpus["text"].tolist(), pseudo, labeled["text"].tolist(),
                          labeled["label"].to_numpy().astype(np.int8), lab_pseudo)
    res = refine_texts(inputs, backbone="minilm", rounds=5, seed=0, progress=False)
    write_run(res, WORK / "reward_silr", report=False)
    t_silr = time.time() - t0
    bb = _minilm()
    Xc = bb.transform(corpus["text"].tolist())
    vanilla = _fit_lr(Xc, pseudo, balanced=True)
    (WORK / "reward_vanilla.json").write_text(json.dumps({"coef": vanilla.coef.tolist(), "intercept": vanilla.intercept,
                                                          "trained_on": "raw LLM labels of the corpus, class-balanced"}))
    train = load_shared(DATA, "train")
    judge = _fit_lr(bb.transform(train["text"].tolist()), train["label"].to_numpy(), balanced=False)
    (WORK / "reward_judge.json").write_text(json.dumps({"coef": judge.coef.tolist(), "intercept": judge.intercept,
                                                        "trained_on": f"all {len(train)} gold train labels"}))
    test = load_shared(DATA, "test")
    Xt = bb.transform(test["text"].tolist())
    yt = test["label"].to_numpy()
    rms = load_rewards()
    ev = {}
    for k, rm in rms.items():
        z = rm.score(test["text"].tolist())
        ev[k] = {"test_accuracy": float(((z > 0) == yt).mean()), "test_auc": float(roc_auc_score(yt, z)),
                 "test_positive_rate": float((z > 0).mean())}
    yc = corpus["label"].to_numpy()
    ev["llm_raw_labels_on_corpus"] = {"accuracy": float((pseudo == yc).mean()),
                                      "auc": float(roc_auc_score(yc, corpus["llm_score"]))}
    ev["silr_final_labels_on_corpus"] = {"accuracy": float((res.labels["final"].to_numpy() == yc).mean())}
    ev["silr"]["final_source"] = res.summary.get("final_source")
    ev["silr"]["selection"] = res.summary.get("selection")
    ev["silr"]["refine_seconds"] = round(t_silr, 1)
    _save_summary({"rewards": ev})
    log(json.dumps(ev, indent=1))


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


def _boot_ci(x, n_boot: int = 2000, seed: int = 0):
    import numpy as np

    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return [float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))]


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


if __name__ == "__main__":
    sys.exit(main())
