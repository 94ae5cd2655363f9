"""The policy LM: loading it (Gemma-3-270M, a local folder or a LoRA adapter), prompting it, sampling answers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from silr.reward import QA_TEMPLATE


DEFAULT_STOPS = ("\nQuestion:", "\n\n")


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
