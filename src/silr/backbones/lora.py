"""Fine-tuned classifier (the paper's set-up): a local transformers model + LoRA, trained with a UU risk.

``lora:MODEL_DIR`` names a local Hugging Face model folder (decoder such as Gemma/Llama, or encoder such as
MiniLM/BERT). Each round builds a FRESH ``AutoModelForSequenceClassification(num_labels=1)`` from the folder,
wraps it with a LoRA adapter (r=8, alpha=32, dropout 0.05 on the attention projections; the score head and any
weights the folder lacks are trained in full) and trains it with AdamW (lr 1e-4, cosine schedule, 3% warm-up,
3 epochs, batch 16, at most 512 tokens). The epoch kept is the one with the lowest risk on the held-out share
of the pseudo-labeled corpus (no gold label). The learner's input is the texts themselves.

Only the adapter and the trained head go into ``state_dict()`` (safetensors-compatible); the base weights are
re-read from ``model_dir`` when a saved model is loaded.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from silr.backbones.base import Backbone
from silr.backbones.lora_model import (  # noqa: F401 (check_model_dir, detect_target_modules re-exported)
    _fingerprint, _is_oom, autocast_dtype, build_lora_classifier, check_model_dir, detect_target_modules,
    resolve_device)
from silr.risks import DEFAULT_SLOPE, UUWeights, batch_risk

__all__ = ["LoraBackbone", "LoraLearner", "check_model_dir", "detect_target_modules"]

log = logging.getLogger(__name__)

class LoraLearner:
    """A LoRA-adapted transformers classifier trained on texts with a UU (or PN) risk.

    Implements the learner protocol of :mod:`silr.learners` with texts as input.

    Parameters
    ----------
    model_dir : path
        Local transformers model folder (config.json, weights, tokenizer).
    r, alpha, dropout : LoRA rank, scaling and dropout.
    target_modules : list of str or None
        Modules LoRA adapts; ``None`` detects the attention projections of the architecture.
    lr, weight_decay, epochs, batch_size, warmup_ratio, max_grad_norm : optimisation (AdamW, cosine schedule).
    max_length : int
        Token limit; longer texts are truncated (counted and reported).
    slope : float
        Negative slope of the robust risk.
    device : "auto", "cpu", "cuda", ...
    precision : "auto", "bf16", "fp16" or "fp32"
        Autocast dtype on GPU (``auto``: bf16 where supported, else fp16). CPU always runs fp32.
    load_in_4bit : bool
        4-bit NF4 base weights (QLoRA) through bitsandbytes; used only on a GPU with bitsandbytes installed,
        otherwise a warning and full precision.
    eval_batch_size : int or None
        Batch size for scoring (``None``: twice the training batch).
    progress : bool
        Log one line per epoch.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        r: int = 8,
        alpha: int = 32,
        dropout: float = 0.05,
        target_modules: Sequence[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        epochs: int = 3,
        batch_size: int = 16,
        warmup_ratio: float = 0.03,
        max_grad_norm: float = 1.0,
        max_length: int = 512,
        slope: float = DEFAULT_SLOPE,
        device: str = "auto",
        precision: str = "auto",
        load_in_4bit: bool = False,
        eval_batch_size: int | None = None,
        progress: bool = True,
    ):
        self.model_dir = check_model_dir(model_dir)
        self.r, self.alpha, self.dropout = int(r), int(alpha), float(dropout)
        self.target_modules = list(target_modules) if target_modules else None
        self.lr, self.weight_decay, self.epochs = float(lr), float(weight_decay), int(epochs)
        self.batch_size = int(batch_size)
        self.warmup_ratio, self.max_grad_norm = float(warmup_ratio), float(max_grad_norm)
        self.max_length = int(max_length)
        self.slope = float(slope)
        self.device = device
        self.precision = precision
        self.load_in_4bit = bool(load_in_4bit)
        self.eval_batch_size = eval_batch_size
        self.progress = progress
        self.model_ = None
        self.history_: list[dict] = []
        self.best_epoch_ = 0
        self.n_truncated_ = 0

    # -- model construction ---------------------------------------------------------------------
    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _autocast_dtype(self, device: torch.device):
        return autocast_dtype(device, self.precision)

    def _build(self, seed: int, device: torch.device):
        """A fresh base model from ``model_dir`` with a new LoRA adapter (seeded)."""
        b = build_lora_classifier(self.model_dir, seed=seed, device=device, r=self.r, alpha=self.alpha,
                                  dropout=self.dropout, target_modules=self.target_modules,
                                  load_in_4bit=self.load_in_4bit, precision=self.precision)
        self.target_modules_ = b.target_modules
        self.modules_to_save_ = b.modules_to_save
        self.tokenizer_ = b.tokenizer
        self.model_ = b.model
        self.device_ = device
        self.quantized_ = b.quantized
        return b.model

    # -- data -----------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Token ids (truncated to ``max_length``) and how many texts were truncated."""
        tok = self.tokenizer_
        limit = min(self.max_length, getattr(tok, "model_max_length", self.max_length) or self.max_length)
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # "sequence longer than max" is counted instead
        try:
            full = tok(texts, truncation=False, add_special_tokens=True)["input_ids"]
            n_trunc = sum(len(ids) > limit for ids in full)
            ids = tok(texts, truncation=True, max_length=limit, add_special_tokens=True)["input_ids"] if n_trunc else full
        finally:
            transformers.logging.set_verbosity(verbosity)
        return ids, int(n_trunc)

    def _batch(self, ids: list[list[int]], rows) -> dict[str, torch.Tensor]:
        feats = [{"input_ids": ids[i]} for i in rows]
        enc = self.tokenizer_.pad(feats, return_tensors="pt", padding=True)
        return {k: v.to(self.device_) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _forward(self, batch) -> torch.Tensor:
        dtype = self._autocast_dtype(self.device_)
        ctx = torch.autocast(self.device_.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            out = self.model_(**batch)
        return out.logits.float().reshape(-1)

    def _scores(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        """Scores of all rows, longest first in batches (then put back in order)."""
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty(len(ids), dtype=np.float32)
        self.model_.eval()
        with torch.no_grad():
            start = 0
            while start < len(order):
                rows = order[start : start + batch_size]
                try:
                    out[rows] = self._forward(self._batch(ids, rows)).cpu().numpy()
                except Exception as e:  # noqa: BLE001
                    if not _is_oom(e) or batch_size == 1:
                        raise
                    batch_size = max(1, batch_size // 2)
                    self._free()
                    warnings.warn(f"CUDA out of memory while scoring; scoring batch size halved to {batch_size}", stacklevel=2)
                    continue
                start += len(rows)
        return out

    def _free(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(self.model_).items()}

    # -- training -------------------------------------------------------------------------------
    def fit(self, X, pseudo, weights: UUWeights, *, risk: str, val_mask: np.ndarray, seed: int = 0):
        """Train a fresh adapter on the texts ``X`` split by ``pseudo`` (0/1); keep the best validation epoch."""
        texts = [str(t) for t in X]
        pseudo = np.asarray(pseudo).astype(np.int64)
        val_mask = np.asarray(val_mask, dtype=bool)
        if len(texts) != pseudo.size or val_mask.size != pseudo.size:
            raise ValueError(f"{len(texts)} texts, {pseudo.size} pseudo-labels and {val_mask.size} mask entries differ")
        bs = self.batch_size
        while True:
            try:
                return self._fit_once(texts, pseudo, weights, risk, val_mask, seed, bs)
            except Exception as e:  # noqa: BLE001
                if not _is_oom(e):
                    raise
                self.model_ = None
                self._free()
                if bs == 1:
                    raise RuntimeError(
                        "CUDA out of memory even at batch size 1: lower max_length, use load_in_4bit=True, "
                        "or pick a smaller model"
                    ) from e
                new = max(1, bs // 2)
                msg = f"CUDA out of memory at batch size {bs}; restarting the round with batch size {new}"
                warnings.warn(msg, stacklevel=2)
                log.warning(msg)
                bs = new

    def _fit_once(self, texts, pseudo, weights, risk, val_mask, seed, bs):
        device = self._device()
        model = self._build(seed, device)
        ids, n_trunc = self._encode(texts)
        self.n_truncated_ = n_trunc
        self._fit_n = len(texts)
        if n_trunc:
            msg = (
                f"{n_trunc} of {len(texts)} texts are longer than {self.max_length} tokens and were truncated "
                f"(only their first {self.max_length} tokens are read)"
            )
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
        train_idx = np.flatnonzero(~val_mask)
        val_idx = np.flatnonzero(val_mask)
        if train_idx.size == 0:
            raise ValueError("no training rows: val_mask holds out the whole corpus")
        gen = torch.Generator().manual_seed(int(seed))
        steps_per_epoch = math.ceil(train_idx.size / bs)
        total = steps_per_epoch * self.epochs
        warmup = math.ceil(self.warmup_ratio * total)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

        def lr_lambda(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        use_scaler = self._autocast_dtype(device) == torch.float16
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        s_all = torch.from_numpy(pseudo)
        s_val = s_all[torch.from_numpy(val_idx)]
        eval_bs = self.eval_batch_size or 2 * bs
        self.history_ = []
        best = (math.inf, 0, None)
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            perm = train_idx[torch.randperm(train_idx.size, generator=gen).numpy()]
            total_loss, steps = 0.0, 0
            for start in range(0, perm.size, bs):
                rows = perm[start : start + bs]
                scores = self._forward(self._batch(ids, rows))
                loss = batch_risk(risk, scores, s_all[torch.from_numpy(rows)].to(scores.device), weights, slope=self.slope)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                    opt.step()
                sched.step()
                total_loss += float(loss.detach())
                steps += 1
            rec = {"epoch": epoch, "train_loss": total_loss / max(steps, 1)}
            if val_idx.size:
                g_val = torch.from_numpy(self._scores([ids[i] for i in val_idx], eval_bs))
                rec["val_loss"] = float(batch_risk(risk, g_val, s_val, weights, slope=self.slope))
                crit = rec["val_loss"]
            else:
                crit = rec["train_loss"]
            rec["seconds"] = time.perf_counter() - t0
            self.history_.append(rec)
            if self.progress:
                log.info("lora epoch %d/%d: %s", epoch, self.epochs, rec)
            if crit < best[0]:
                best = (crit, epoch, self._trainable_state())
        self.best_epoch_ = best[1]
        self._set_trainable(best[2])
        self.batch_size_ = bs
        model.eval()
        return self

    def _set_trainable(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        res = set_peft_model_state_dict(self.model_, {k: v.to(self.device_) for k, v in state.items()})
        unexpected = list(getattr(res, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(f"saved LoRA state does not fit the model in {self.model_dir}: unexpected {unexpected[:5]}")
        missing = [k for k in (getattr(res, "missing_keys", []) or []) if "lora_" in k or "modules_to_save" in k]
        if missing:
            raise ValueError(f"saved LoRA state lacks {len(missing)} adapter tensors, e.g. {missing[:3]}")

    # -- inference ------------------------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """Real scores of the texts (higher = positive)."""
        if self.model_ is None:
            raise RuntimeError("this LoraLearner is not fitted")
        texts = [str(t) for t in X]
        if not texts:
            return np.zeros(0, dtype=np.float32)
        ids, n_trunc = self._encode(texts)
        if n_trunc and not (len(texts) == getattr(self, "_fit_n", -1) and n_trunc == self.n_truncated_):
            warnings.warn(f"{n_trunc} of {len(texts)} texts longer than {self.max_length} tokens were truncated", stacklevel=2)
        return self._scores(ids, self.eval_batch_size or 2 * getattr(self, "batch_size_", self.batch_size))

    # -- persistence (no pickle) ----------------------------------------------------------------
    def config(self) -> dict:
        return {
            "kind": "lora",
            "model_dir": str(self.model_dir),
            "model_fingerprint": _fingerprint(self.model_dir),
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": list(getattr(self, "target_modules_", self.target_modules) or []) or None,
            "modules_to_save": list(getattr(self, "modules_to_save_", [])),
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "warmup_ratio": self.warmup_ratio,
            "max_grad_norm": self.max_grad_norm,
            "max_length": self.max_length,
            "slope": self.slope,
            "precision": self.precision,
            "load_in_4bit": self.load_in_4bit,
            "best_epoch": self.best_epoch_,
            "n_truncated": self.n_truncated_,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA adapter and the trained head (and any weights the folder lacked), as CPU tensors."""
        if self.model_ is None:
            raise RuntimeError("this LoraLearner is not fitted")
        return self._trainable_state()

    @classmethod
    def from_state(cls, config: dict, state: dict[str, torch.Tensor], *, model_dir=None, device: str = "auto") -> "LoraLearner":
        """Rebuild a trained learner: the base model from ``model_dir`` plus the saved adapter and head."""
        keys = ("r", "alpha", "dropout", "target_modules", "lr", "weight_decay", "epochs", "batch_size",
                "warmup_ratio", "max_grad_norm", "max_length", "slope", "precision", "load_in_4bit")
        self = cls(model_dir or config["model_dir"], device=device, **{k: config[k] for k in keys if k in config})
        fp = config.get("model_fingerprint")
        if fp and fp != _fingerprint(self.model_dir):
            warnings.warn(
                f"the model folder {self.model_dir} differs from the one the adapter was trained on "
                "(weight files changed); scores may differ",
                stacklevel=2,
            )
        self._build(0, self._device())
        if sorted(self.modules_to_save_) != sorted(config.get("modules_to_save") or self.modules_to_save_):
            raise ValueError(
                f"the saved adapter trained {config.get('modules_to_save')} in full, but {self.model_dir} "
                f"gives {self.modules_to_save_}: not the same model folder"
            )
        self._set_trainable(state)
        self.model_.eval()
        self.best_epoch_ = int(config.get("best_epoch", 0))
        self.n_truncated_ = int(config.get("n_truncated", 0))
        self.history_ = []
        return self


class LoraBackbone(Backbone):
    """``lora:MODEL_DIR``: fine-tune a local transformers model with LoRA each round (input: the texts).

    Keyword arguments are :class:`LoraLearner` parameters (``epochs``, ``lr``, ``batch_size``, ``max_length``,
    ``load_in_4bit`` ...). ``cache_dir``/``progress``/``use_cache`` are accepted for uniformity.
    """

    def __init__(self, model_dir: str | Path, *, cache_dir=None, use_cache: bool = True, progress: bool = True, **learner_params):
        self.model_dir = check_model_dir(model_dir)
        self.name = f"lora:{model_dir}"
        self.progress = progress
        # validate the parameters now rather than at round 1
        LoraLearner(self.model_dir, progress=progress, **learner_params)
        self.learner_params = dict(learner_params)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """The texts themselves, as a 1-D numpy object array (what :class:`LoraLearner` consumes)."""
        arr = np.empty(len(texts), dtype=object)
        arr[:] = [str(t) for t in texts]
        return arr

    def new_learner(self, round: int, **head_params) -> LoraLearner:
        """A fresh learner (a fresh model from ``model_dir``); head parameters do not apply and are ignored."""
        return LoraLearner(self.model_dir, progress=self.progress, **self.learner_params)

    def load_learner(self, config: dict, state: dict) -> LoraLearner:
        return LoraLearner.from_state(config, state, model_dir=self.model_dir)

    def spec(self) -> dict:
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.learner_params.items()}
        return {"name": self.name, "kind": "lora", "model_dir": str(self.model_dir), "params": params}

    @classmethod
    def load(cls, spec: dict, folder: Path) -> "LoraBackbone":
        return cls(spec["model_dir"], **spec.get("params", {}))
