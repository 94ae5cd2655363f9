"""DPO with a LoRA adapter: chosen = highest reward, rejected = lowest among the ``n`` samples."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from silr.align.policy import build_prompt
from silr.reward import QA_TEMPLATE


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
