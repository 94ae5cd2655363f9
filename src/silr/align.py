"""Aligning a causal LM with a silr reward model, and self-refinement of generations.

* :func:`best_of_n` -- sample ``n`` answers per prompt, keep the one the reward ranks highest;
* :func:`preference_pairs` + :func:`train_dpo` -- chosen = highest reward, rejected = lowest among the ``n``,
  then DPO (TRL ``DPOTrainer``) with a LoRA adapter (peft); checkpoints every ``save_steps`` and resumes from
  the last one found in the output folder;
* :func:`self_refine_answers` -- the paper's second use: the LLM judges its own answers (round 0, via
  :class:`~silr.annotate.local.LocalLMScorer`), silr refines those judgements with a few gold-checked
  answers, and the answer the refined classifier prefers is kept;
* :func:`run_align` -- the ``silr align`` command's work (files in, run folder out).

Prompts are wrapped with a base-model friendly template, ``"Question: {prompt}\\nAnswer:"`` (Gemma-3-270M is
a base model, not a chat model); answers are cut at the next ``"\\nQuestion:"`` or blank line.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from silr.reward import QA_TEMPLATE, RewardModel

__all__ = [
    "QA_TEMPLATE",
    "load_policy",
    "build_prompt",
    "clean_answer",
    "sample_answers",
    "pick_best",
    "BestOfN",
    "best_of_n",
    "preference_pairs",
    "train_dpo",
    "last_checkpoint",
    "numeric_check",
    "SelfRefineResult",
    "self_refine_answers",
    "run_align",
]

DEFAULT_STOPS = ("\nQuestion:", "\n\n")


# ---------------------------------------------------------------------------------------------- policy
def load_policy(policy: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
    """``(model, tokenizer)`` from ``gemma-3-270m`` (built offline from its GGUF package), a local
    transformers folder, or a LoRA adapter folder (``adapter_config.json``: its base model is loaded first)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from silr.annotate.local import resolve_model_dir
    from silr.env import use_local_models

    use_local_models()
    p = Path(policy).expanduser()
    if (p / "adapter_config.json").exists():
        from peft import PeftModel

        base_name = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        base, tok = load_policy(base_name, cache_dir=cache_dir)
        return PeftModel.from_pretrained(base, str(p)), tok
    path, _ = resolve_model_dir(policy, cache_dir)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.eval()
    return model, tok


def build_prompt(question: str, template: str = QA_TEMPLATE) -> str:
    return template.replace("{prompt}", str(question).strip())


def clean_answer(text: str, stops: Sequence[str] = DEFAULT_STOPS) -> str:
    """Strip a base model's continuation and cut it at the first stop string (next question, blank line)."""
    text = text.lstrip()  # a leading newline is not the end of the answer
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut].strip()


def sample_answers(model, tokenizer, prompts: Sequence[str], *, n: int = 4, max_new_tokens: int = 64,
                   temperature: float = 1.0, top_p: float = 0.95, do_sample: bool = True, seed: int = 0,
                   batch_size: int = 8, template: str = QA_TEMPLATE, stops: Sequence[str] = DEFAULT_STOPS,
                   progress: bool = True) -> list[list[str]]:
    """``n`` sampled answers per prompt (list of lists, prompt order). Deterministic for a seed: batch ``b``
    is sampled after ``torch.manual_seed(seed + b)``."""
    import torch

    if n < 1:
        raise ValueError("n must be >= 1")
    from silr.progress import progress_bar

    texts = [build_prompt(p, template) for p in prompts]
    old_side = getattr(tokenizer, "padding_side", "right")
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[list[str]] = []
    was_training = model.training
    model.eval()
    try:
        with progress_bar(f"sampling {n} answer(s) per prompt", len(texts), enabled=progress) as advance:
            for b, s in enumerate(range(0, len(texts), batch_size)):
                chunk = texts[s : s + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True)
                enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                torch.manual_seed(seed + b)
                with torch.inference_mode():
                    gen = model.generate(**enc, do_sample=do_sample, temperature=temperature if do_sample else None,
                                         top_p=top_p if do_sample else None, top_k=0 if do_sample else None,
                                         max_new_tokens=max_new_tokens, num_return_sequences=n,
                                         pad_token_id=pad_id)
                new = gen[:, enc["input_ids"].shape[1]:]
                dec = tokenizer.batch_decode(new, skip_special_tokens=True)
                for i in range(len(chunk)):
                    out.append([clean_answer(d, stops) for d in dec[i * n : (i + 1) * n]])
                advance(len(chunk))
    finally:
        tokenizer.padding_side = old_side
        if was_training:
            model.train()
    return out


# ---------------------------------------------------------------------------------------------- best of n
def pick_best(rewards: np.ndarray) -> np.ndarray:
    """Index of the highest reward in each row (the first one on ties)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError("rewards must be a (prompts, n) array")
    return np.argmax(np.where(np.isnan(r), -np.inf, r), axis=1)


@dataclass
class BestOfN:
    prompts: list[str]
    samples: list[list[str]]
    rewards: np.ndarray  # (prompts, n)
    best: np.ndarray     # index of the kept answer per prompt

    @property
    def answers(self) -> list[str]:
        return [s[i] for s, i in zip(self.samples, self.best)]

    @property
    def best_rewards(self) -> np.ndarray:
        return self.rewards[np.arange(len(self.best)), self.best]

    def to_records(self) -> list[dict]:
        return [{"prompt": p, "samples": s, "rewards": [float(x) for x in r], "best": int(b)}
                for p, s, r, b in zip(self.prompts, self.samples, self.rewards, self.best)]


def score_samples(reward: Callable, prompts: Sequence[str], samples: Sequence[Sequence[str]]) -> np.ndarray:
    """Reward of every sample: a (prompts, n) array (one reward call over all pairs)."""
    n = len(samples[0]) if samples else 0
    if any(len(s) != n for s in samples):
        raise ValueError("every prompt needs the same number of samples")
    flat_p = [p for p, s in zip(prompts, samples) for _ in s]
    flat_c = [c for s in samples for c in s]
    r = np.asarray(reward(prompts=flat_p, completions=flat_c), dtype=np.float64) if flat_c else np.zeros(0)
    return r.reshape(len(samples), n)


def best_of_n(model, tokenizer, prompts: Sequence[str], reward: Callable, *, n: int = 4,
              samples: Sequence[Sequence[str]] | None = None, **sample_kw) -> BestOfN:
    """Sample ``n`` answers per prompt (or take ``samples``) and keep the highest-reward one."""
    if samples is None:
        samples = sample_answers(model, tokenizer, prompts, n=n, **sample_kw)
    R = score_samples(reward, prompts, samples)
    return BestOfN(list(prompts), [list(s) for s in samples], R, pick_best(R))


# ---------------------------------------------------------------------------------------------- DPO
def preference_pairs(prompts: Sequence[str], samples: Sequence[Sequence[str]], rewards: np.ndarray, *,
                     template: str = QA_TEMPLATE, min_margin: float = 0.0) -> list[dict]:
    """DPO pairs: chosen = highest-reward answer, rejected = lowest among a prompt's samples. Prompts whose
    best and worst answers are the same text or differ in reward by ``<= min_margin`` give no pair."""
    R = np.asarray(rewards, dtype=np.float64)
    pairs = []
    for p, s, r in zip(prompts, samples, R):
        hi, lo = int(np.argmax(r)), int(np.argmin(r))
        if s[hi].strip() == s[lo].strip() or r[hi] - r[lo] <= min_margin:
            continue
        pairs.append({"prompt": build_prompt(p, template), "chosen": " " + s[hi], "rejected": " " + s[lo],
                      "reward_chosen": float(r[hi]), "reward_rejected": float(r[lo])})
    return pairs


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``folder`` (None when there is none)."""
    d = Path(folder)
    if not d.is_dir():
        return None
    cks = [p for p in d.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)
           and (p / "trainer_state.json").exists()]
    return str(max(cks, key=lambda p: int(p.name.split("-")[1]))) if cks else None


def _lora_targets(model) -> list[str] | str:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    attn = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj") if t in names]
    return attn or "all-linear"


def train_dpo(model, tokenizer, pairs: Sequence[dict], out_dir: str | os.PathLike, *, steps: int = 30,
              learning_rate: float = 5e-5, beta: float = 0.1, lora_r: int = 8, lora_alpha: int = 16,
              lora_dropout: float = 0.0, target_modules: Sequence[str] | str | None = None, batch_size: int = 2,
              grad_accum: int = 1, max_length: int = 256, save_steps: int = 10, seed: int = 0,
              resume: bool = True, progress: bool = True, logging_steps: int = 1):
    """DPO with a LoRA adapter on ``model``; returns the trained PEFT model (adapter saved to ``out_dir/adapter``).

    Checkpoints go to ``out_dir/checkpoints/checkpoint-N`` every ``save_steps`` steps; with ``resume`` the
    newest one there is resumed (optimizer, scheduler, RNG and step restored), so an interrupted run
    continues where it stopped. The loss log is written to ``out_dir/dpo_log.json``.
    """
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ValueError("no preference pairs: every prompt's best and worst answers were identical")
    out = Path(out_dir)
    ck_dir = out / "checkpoints"
    ck_dir.mkdir(parents=True, exist_ok=True)
    ds = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    cfg = DPOConfig(
        output_dir=str(ck_dir), max_steps=int(steps), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, learning_rate=learning_rate, beta=beta, max_length=max_length,
        save_strategy="steps", save_steps=max(1, int(save_steps)), logging_steps=logging_steps, report_to="none",
        bf16=False, fp16=False, gradient_checkpointing=False, seed=seed, data_seed=seed, disable_tqdm=not progress,
        lr_scheduler_type="constant", warmup_steps=0, dataloader_num_workers=0, save_total_limit=2,
        use_cpu=not _cuda(),
    )
    peft_cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                          task_type="CAUSAL_LM", target_modules=list(target_modules) if isinstance(
                              target_modules, (list, tuple)) else (target_modules or _lora_targets(model)))
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tokenizer, peft_config=peft_cfg)
    ck = last_checkpoint(ck_dir) if resume else None
    t0 = time.time()
    trainer.train(resume_from_checkpoint=ck)
    trainer.save_model(str(out / "adapter"))
    tokenizer.save_pretrained(str(out / "adapter"))
    log = {"resumed_from": ck, "steps": int(trainer.state.global_step), "seconds": round(time.time() - t0, 1),
           "log_history": trainer.state.log_history}
    (out / "dpo_log.json").write_text(json.dumps(log, indent=2, default=str))
    m = trainer.model
    m.eval()
    return m


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- self-refinement
_INT = re.compile(r"-?\d[\d,]*")


def numeric_check(answer: str, gold: Any) -> bool:
    """True when the first integer in ``answer`` equals ``gold`` (commas ignored)."""
    m = _INT.search(str(answer))
    if not m:
        return False
    try:
        return int(m.group(0).replace(",", "")) == int(str(gold).strip().replace(",", ""))
    except ValueError:
        return False


JUDGE_INSTRUCTION = ("Each item is a question and a proposed answer. Decide whether the answer is correct. "
                     "Reply {positive} if it is correct, {negative} if it is wrong.")


@dataclass
class SelfRefineResult:
    questions: list[str]
    samples: list[list[str]]
    correct: np.ndarray      # (questions, n) bool, from the checker (evaluation only, except labeled rows)
    llm_score: np.ndarray    # (questions, n) the LLM's own judgement (round 0)
    refined_score: np.ndarray  # (questions, n) silr's refined classifier
    labeled_questions: np.ndarray  # bool per question: its answers were the gold-checked sample
    picks: dict[str, np.ndarray] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    refine_summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> dict:
        return {"n_questions_eval": int((~self.labeled_questions).sum()), "accuracy": self.accuracy,
                "final_source": self.refine_summary.get("final_source"),
                "selection": self.refine_summary.get("selection")}


def _majority(samples: list[str]) -> int:
    keys = []
    for s in samples:
        m = _INT.search(s)
        keys.append(m.group(0) if m else s.strip().lower())
    counts = {k: keys.count(k) for k in keys}
    return int(max(range(len(keys)), key=lambda i: (counts[keys[i]], -i)))


def self_refine_answers(model, tokenizer, questions: Sequence[str], gold: Sequence[Any], *, n: int = 4,
                        n_labeled: int = 50, check: Callable[[str, Any], bool] = numeric_check,
                        instruction: str = JUDGE_INSTRUCTION, label_words: tuple[str, str] = ("yes", "no"),
                        backbone: str = "minilm", rounds: int = 3, seed: int = 0, max_new_tokens: int = 12,
                        samples: Sequence[Sequence[str]] | None = None, template: str = QA_TEMPLATE,
                        cache_dir: str | os.PathLike | None = None, progress: bool = True,
                        sample_kw: dict | None = None) -> SelfRefineResult:
    """Self-refinement of generations (paper's second use).

    1. ``n`` answers are sampled per question;
    2. the same LLM judges each (question, answer) (round 0: ``log p(yes) - log p(no)`` with ``instruction``,
       threshold fitted on the gold-checked sample, 4 shots from it);
    3. the answers of the first ``ceil(n_labeled / n)`` questions are checked against ``gold`` (``check``):
       that is the labeled sample; silr refines the LLM's judgements on frozen ``backbone`` features;
    4. per question the answer with the highest refined score is kept.

    Accuracy is reported on the other questions only, for: the first sample (the policy), majority vote
    (self-consistency), the LLM-judge's pick, silr's pick, and the oracle (any correct answer).
    """
    import pandas as pd

    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import spec_from_instruction
    from silr.annotate.run import annotate_frame
    from silr.inputs import RefineInputs
    from silr.texts import refine_texts

    t0 = time.time()
    questions = list(questions)
    if samples is None:
        samples = sample_answers(model, tokenizer, questions, n=n, max_new_tokens=max_new_tokens, seed=seed,
                                 template=template, progress=progress, **(sample_kw or {}))
    samples = [list(s) for s in samples]
    n = len(samples[0])
    Q = len(questions)
    correct = np.array([[bool(check(a, g)) for a in s] for s, g in zip(samples, gold)])
    texts = [f"{build_prompt(q, template)} {a}" for q, s in zip(questions, samples) for a in s]
    k_lab = min(Q - 1, -(-n_labeled // n))
    lab_q = np.zeros(Q, dtype=bool)
    lab_q[:k_lab] = True
    lab_rows = np.repeat(lab_q, n)
    y = correct.ravel().astype(int)
    if y[lab_rows].min() == y[lab_rows].max():
        raise ValueError("the gold-checked sample has one class only (all answers right or all wrong); "
                         "label more questions")

    # round 0: the LLM judges its own answers
    spec = spec_from_instruction(instruction, list(label_words))
    scorer = LocalLMScorer("policy", model_obj=model, tokenizer=tokenizer, batch_size=16)
    df = pd.DataFrame({"text": texts})
    labeled = pd.DataFrame({"text": np.asarray(texts, dtype=object)[lab_rows], "label": y[lab_rows]})
    # the duplicate texts (same answer twice) are scored once; the annotator is given unique texts
    ann, rec = annotate_frame(df, "text", scorer, spec, labeled=labeled.drop_duplicates("text"), shots=4,
                              threshold="accuracy", progress=progress, seed=seed)
    llm = ann["llm_score"].to_numpy(dtype=float)
    pseudo = ann["pseudo_label"].fillna(0).to_numpy().astype(np.int8)
    if pseudo.min() == pseudo.max():  # the method needs both pseudo classes: fall back to the median split
        pseudo = (llm > np.median(llm)).astype(np.int8)

    inputs = RefineInputs(list(texts), pseudo, list(np.asarray(texts, dtype=object)[lab_rows]),
                          y[lab_rows].astype(np.int8), pseudo[lab_rows], llm_score=llm,
                          labeled_llm_score=llm[lab_rows])
    res = refine_texts(inputs, backbone=backbone, rounds=rounds, seed=seed, progress=progress,
                       cache_dir=cache_dir)
    refined = res.labels["score"].to_numpy(dtype=float)

    L = llm.reshape(Q, n)
    Rf = refined.reshape(Q, n)
    picks = {
        "first_sample": np.zeros(Q, dtype=int),
        "majority_vote": np.array([_majority(s) for s in samples]),
        "llm_judge": pick_best(L),
        "silr_refined": pick_best(Rf),
    }
    ev = ~lab_q
    acc = {k: float(correct[np.arange(Q), p][ev].mean()) for k, p in picks.items()}
    acc["oracle_any_correct"] = float(correct[ev].any(axis=1).mean())
    acc["mean_over_samples"] = float(correct[ev].mean())
    from sklearn.metrics import roc_auc_score

    yv = correct[ev].ravel()
    if yv.min() != yv.max():
        acc["auc_llm_judge"] = float(roc_auc_score(yv, L[ev].ravel()))
        acc["auc_silr_refined"] = float(roc_auc_score(yv, Rf[ev].ravel()))
    summ = {k: res.summary.get(k) for k in ("final_source", "selection", "stop_reason", "n_rounds")}
    summ["llm_threshold"] = rec["threshold"]
    return SelfRefineResult(questions, samples, correct, L, Rf, lab_q, picks, acc, summ, time.time() - t0)


# ---------------------------------------------------------------------------------------------- the command's work
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
