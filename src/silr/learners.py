"""Per-round learners: a fresh classifier trained on the two pseudo-labeled sets with a chosen risk.

A learner is what one refinement round trains. The loop in :mod:`silr.refine` only needs:

* ``fit(X, pseudo, weights, *, risk, val_mask, seed, labeled=None) -> self``; ``labeled`` is None or
  ``(X_labeled, y_labeled, w)``: the objective is then ``(1 - w) * corpus risk + w * supervised PN risk`` on the
  labeled rows (:func:`silr.risks.joint_risk`), with labeled batches cycled alongside the corpus batches
* ``decision_function(X) -> np.ndarray`` (real scores, higher = positive)
* ``history_`` (per-epoch train/validation risk) and ``best_epoch_``
* ``config() -> dict`` and ``state_dict() -> dict[str, torch.Tensor]`` for saving, and
  ``from_state(config, state)`` to reload without pickle.

:class:`HeadLearner` trains a linear or small MLP head on feature arrays (dense numpy or scipy sparse).
The epoch kept is the one with the lowest risk on the held-out share of the pseudo-labeled corpus;
no gold label is used.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from silr.risks import DEFAULT_SLOPE, UUWeights, batch_risk, joint_risk

__all__ = ["Learner", "HeadLearner", "auto_batch_size", "check_labeled", "LabeledBatches", "KeepBest", "fit_epochs"]


@runtime_checkable
class Learner(Protocol):
    history_: list[dict]
    best_epoch_: int

    def fit(self, X, pseudo: np.ndarray, weights: UUWeights, *, risk: str, val_mask: np.ndarray, seed: int,
            labeled=None): ...

    def decision_function(self, X) -> np.ndarray: ...

    def config(self) -> dict: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...


def auto_batch_size(n: int) -> int:
    """Mini-batch size: 256 for small corpora, growing so an epoch is at most ~64 steps on large ones."""
    return int(max(256, math.ceil(n / 64)))


def check_labeled(labeled):
    """Validate the ``labeled`` argument of ``fit``: None, or ``(X_labeled, y_labeled, weight)``.

    Returns None when there is nothing to add (None, or weight 0), else ``(X_labeled, y (int64 0/1), weight)``.
    """
    if labeled is None:
        return None
    if not isinstance(labeled, (tuple, list)) or len(labeled) != 3:
        raise ValueError("labeled must be None or a tuple (X_labeled, y_labeled, weight)")
    X_lab, y_lab, w = labeled
    try:
        w = float(w)
    except (TypeError, ValueError) as e:
        raise ValueError(f"labeled weight must be a number in [0, 1], got {w!r}") from e
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"labeled weight must be in [0, 1], got {w!r}")
    if w == 0.0:
        return None
    y = np.asarray(y_lab)
    if y.ndim != 1 or y.size == 0 or not np.isin(y, (0, 1)).all():
        raise ValueError("labeled y must be a non-empty 1-D array of 0/1 gold labels")
    n = X_lab.shape[0] if hasattr(X_lab, "shape") else len(X_lab)
    if n != y.size:
        raise ValueError(f"labeled has {n} rows of X but {y.size} labels")
    return X_lab, y.astype(np.int64), w


class LabeledBatches:
    """Row indices of the labeled sample, one batch per training step, cycled.

    With at most ``batch_size`` labeled rows every step sees all of them; otherwise the rows are visited in
    shuffled blocks, reshuffled after each pass. Its own generator: the corpus batch order does not change.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = int(n), max(1, int(batch_size))
        self._gen = torch.Generator().manual_seed(int(seed) + 7919)
        self._perm, self._pos = np.arange(self.n), self.n

    def next(self) -> np.ndarray:
        if self.n <= self.batch_size:
            return np.arange(self.n)
        if self._pos + self.batch_size > self.n:
            self._perm, self._pos = torch.randperm(self.n, generator=self._gen).numpy(), 0
        rows = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return rows


def _to_tensor(X, rows: np.ndarray | None = None) -> torch.Tensor:
    """Rows of a dense or sparse matrix as a float32 tensor (sparse rows become a sparse COO tensor)."""
    Xr = X if rows is None else X[rows]
    if sp.issparse(Xr):
        csr = sp.csr_matrix(Xr)
        csr.sum_duplicates()  # sorted, unique indices: the COO tensor below is coalesced by construction
        coo = csr.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        return torch.sparse_coo_tensor(
            idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape, is_coalesced=True, check_invariants=False
        )
    return torch.from_numpy(np.ascontiguousarray(Xr, dtype=np.float32))


class _Head(nn.Module):
    def __init__(self, n_features: int, hidden: int, mean: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.hidden = hidden
        if hidden:
            self.inp = nn.Linear(n_features, hidden)
            self.out = nn.Linear(hidden, 1)
        else:
            self.out = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor, *, standardized: bool = False) -> torch.Tensor:
        if x.is_sparse:
            # sparse features (TF-IDF) are used as they are; standardisation would densify them
            h = torch.sparse.mm(x, (self.inp if self.hidden else self.out).weight.t()) + (
                self.inp if self.hidden else self.out
            ).bias
            if self.hidden:
                h = self.out(torch.relu(h))
            return h.squeeze(-1)
        if not standardized:
            x = (x - self.mean) / self.scale
        if self.hidden:
            x = torch.relu(self.inp(x))
        return self.out(x).squeeze(-1)



class KeepBest:
    """The epoch with the lowest criterion and a copy of the module's weights then; :meth:`restore` puts them back
    (the epoch choice shared by the heads on frozen features and the fine-tuned encoder)."""

    def __init__(self) -> None:
        self.crit, self.epoch, self.state = math.inf, 0, None

    def offer(self, crit: float, epoch: int, module: torch.nn.Module, *, keep: bool = True) -> None:
        """``keep=False``: no copy of the weights (the caller keeps the module's own when no epoch follows)."""
        if crit < self.crit:
            self.crit, self.epoch = crit, epoch
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()} if keep else None

    def restore(self, learner) -> None:
        learner.best_epoch_ = self.epoch
        learner.module_.load_state_dict(self.state)
        learner.module_.eval()


def fit_epochs(learner, opt: torch.optim.Optimizer, gen: torch.Generator, n_batches: int, batch_loss, val_loss=None):
    """The epoch loop of the heads on frozen features (:class:`HeadLearner`; the Ray engine's streaming head).

    Each of ``learner.epochs`` epochs visits the ``n_batches`` batches in an order drawn from ``gen``, one ``opt``
    step on ``batch_loss(j)`` (a scalar tensor) each. ``val_loss()`` (None: no held-out rows) is the held-out
    corpus risk, computed in eval mode without gradients; the epoch kept is the one where it is lowest (else the
    training loss). Sets ``history_`` and ``best_epoch_``, restores the kept weights and returns ``learner``.
    """
    learner.history_ = []
    best = KeepBest()
    for epoch in range(1, learner.epochs + 1):
        learner.module_.train()
        total, steps = 0.0, 0
        for j in torch.randperm(n_batches, generator=gen).tolist():
            loss = batch_loss(j)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        rec = {"epoch": epoch, "train_loss": total / max(steps, 1)}
        if val_loss is not None:
            with torch.no_grad():
                learner.module_.eval()
                rec["val_loss"] = float(val_loss())
            crit = rec["val_loss"]
        else:
            crit = rec["train_loss"]
        learner.history_.append(rec)
        best.offer(crit, epoch, learner.module_)
    best.restore(learner)
    return learner


class HeadLearner:
    """A linear (``hidden=0``) or one-hidden-layer MLP head trained with AdamW under a UU/PN risk.

    Parameters
    ----------
    hidden : int
        Hidden units; 0 gives a linear head.
    epochs, lr, weight_decay, batch_size :
        Optimisation. ``batch_size=None`` picks :func:`auto_batch_size`. The defaults (AdamW, lr 1e-2,
        60 epochs) come from the calibration in PAPER.md section 7: lr 1e-3 / 20 epochs under-trains.
    slope : float
        Negative slope of the robust risk's leaky ReLU.
    standardize : bool
        Standardise dense features with the corpus mean and standard deviation (stored in the head).
    """

    def __init__(
        self,
        *,
        hidden: int = 0,
        epochs: int = 60,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int | None = None,
        slope: float = DEFAULT_SLOPE,
        standardize: bool = True,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.slope = slope
        self.standardize = standardize

    _PARAMS = ("hidden", "epochs", "lr", "weight_decay", "batch_size", "slope", "standardize")

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> "HeadLearner":
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"HeadLearner has no parameter {k!r}; parameters: {', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def clone(self) -> "HeadLearner":
        """A new, unfitted head with the same parameters."""
        return type(self)(**self.get_params())

    # -- training -------------------------------------------------------------------------------
    def fit(self, X, pseudo, weights: UUWeights, *, risk: str, val_mask: np.ndarray, seed: int = 0, labeled=None):
        """Train a fresh head on ``X`` split by ``pseudo``; ``labeled=(X_lab, y_lab, w)`` adds the supervised
        PN risk of the labeled rows with weight ``w`` (``w == 0`` or None: exactly the corpus risk alone)."""
        lab = check_labeled(labeled)
        # a head this small gains nothing from intra-op threads, and loses badly on a busy machine
        # (benchmarks/RESULTS.md, speed: 5x slower with 2 threads at load 8)
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(X, pseudo, weights, risk=risk, val_mask=val_mask, seed=seed, lab=lab)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, X, pseudo, weights: UUWeights, *, risk: str, val_mask: np.ndarray, seed: int = 0, lab=None):
        pseudo = np.asarray(pseudo).astype(np.int64)
        val_mask = np.asarray(val_mask, dtype=bool)
        train_idx = np.flatnonzero(~val_mask)
        val_idx = np.flatnonzero(val_mask)
        gen = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))
        n_features = X.shape[1]
        dense = not sp.issparse(X)
        # rows shuffled once; each epoch visits contiguous blocks (views, no copies) in a random order
        order = train_idx[torch.randperm(train_idx.size, generator=gen).numpy()]
        if dense:
            X_train = _to_tensor(X, order)
            if self.standardize:
                mean = X_train.mean(0)
                scale = X_train.std(0).clamp_min(1e-6)
                X_train = (X_train - mean) / scale  # standardised once, not per batch
            else:
                mean, scale = torch.zeros(n_features), torch.ones(n_features)
        else:
            X_train = X[order].tocsr()
            mean, scale = torch.zeros(n_features), torch.ones(n_features)
        self.module_ = _Head(n_features, self.hidden, mean, scale)
        opt = torch.optim.AdamW(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        bs = self.batch_size or auto_batch_size(train_idx.size)
        s_train = torch.from_numpy(pseudo[order])
        X_val = _to_tensor(X, val_idx) if val_idx.size else None
        s_val = torch.from_numpy(pseudo[val_idx])
        starts = np.arange(0, train_idx.size, bs)
        sparse_batches = None if dense else [_to_tensor(X_train, np.arange(a, min(a + bs, train_idx.size))) for a in starts]
        cycler = None
        if lab is not None:
            X_lab = lab[0]
            if sp.issparse(X_lab) != (not dense):
                raise ValueError("labeled X must be of the same kind (dense or sparse) as the corpus features")
            if X_lab.shape[1] != n_features:
                raise ValueError(f"labeled X has {X_lab.shape[1]} features, the corpus {n_features}")
            if dense:
                L = _to_tensor(X_lab)
                L = (L - mean) / scale if self.standardize else L
            else:
                L = sp.csr_matrix(X_lab)
            y_lab, w_lab = torch.from_numpy(lab[1]), lab[2]
            cycler = LabeledBatches(lab[1].size, min(bs, lab[1].size), seed)

        def batch_loss(j: int) -> torch.Tensor:
            a = int(starts[j])
            if dense:
                out = self.module_(X_train[a : a + bs], standardized=self.standardize)
            else:
                out = self.module_(sparse_batches[j])
            loss = batch_risk(risk, out, s_train[a : a + bs], weights, slope=self.slope)
            if cycler is not None:
                lrows = cycler.next()
                if dense:
                    sup = self.module_(L[torch.from_numpy(lrows)], standardized=self.standardize)
                else:
                    sup = self.module_(_to_tensor(L, lrows))
                loss = joint_risk(loss, sup, y_lab[torch.from_numpy(lrows)], w_lab)
            return loss

        def val_loss() -> torch.Tensor:
            return batch_risk(risk, self.module_(X_val), s_val, weights, slope=self.slope)

        return fit_epochs(self, opt, gen, starts.size, batch_loss, val_loss if X_val is not None else None)

    # -- inference ------------------------------------------------------------------------------
    def decision_function(self, X, *, batch_size: int = 65536) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                rows = np.arange(start, min(start + batch_size, X.shape[0]))
                out.append(self.module_(_to_tensor(X, rows)).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    # -- persistence (no pickle) ------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "kind": "head",
            "hidden": self.hidden,
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "slope": self.slope,
            "standardize": self.standardize,
            "n_features": int(self.module_.mean.numel()),
            "best_epoch": self.best_epoch_,
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict, state: dict[str, torch.Tensor]) -> "HeadLearner":
        keys = ("hidden", "epochs", "lr", "weight_decay", "batch_size", "slope", "standardize")
        self = cls(**{k: config[k] for k in keys})
        n = int(config["n_features"])
        self.module_ = _Head(n, self.hidden, torch.zeros(n), torch.ones(n))
        self.module_.load_state_dict(state)
        self.module_.eval()
        self.best_epoch_ = int(config.get("best_epoch", 0))
        self.history_ = []
        return self
