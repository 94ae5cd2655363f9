"""The training steps of one fine-tuning fit (:class:`silr.finetune.FineTuneLearner`), written once for the local
learner and the Ray Train workers (:mod:`silr.engine.ray_train`): a change to the loop lands in both."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from silr.learners import KeepBest, LabeledBatches
from silr.risks import UUWeights, batch_risk, joint_risk

if TYPE_CHECKING:
    from silr.finetune import FineTuneLearner

__all__ = ["FineTuneSteps"]


class FineTuneSteps:
    """The training of one fit, shared by :meth:`FineTuneLearner._fit` and the Ray Train workers
    (:func:`silr.engine.ray_train.train_loop_per_worker`), so the loop is written once.

    It loads a fresh model (``learner._load(seed)``), tokenises the corpus and the labeled rows
    (``lab = (texts, y, w)`` or None), and holds the corpus permutation's generator, the labeled batches, the
    optimiser (:meth:`optimiser`), the per-epoch ``history`` and the ``best`` epoch (:class:`KeepBest`). A caller
    runs :meth:`epoch` on its rows (all of them, or a worker's share through ``net``, e.g. a DDP wrapper of
    ``model``), computes the held-out risk with :meth:`val_loss` and closes the epoch with :meth:`end_epoch`.
    """

    def __init__(self, learner: "FineTuneLearner", texts, pseudo: np.ndarray, weights: UUWeights, risk: str,
                 seed: int, lab=None):
        self.learner, self.weights, self.risk = learner, weights, risk
        self.model = learner._load(seed)
        self.ids = learner._tokenize(texts)
        self.n_truncated = learner._last_truncated
        self.lab_ids = self.lab_y = self.cycler = None
        self.w = 0.0
        if lab is not None:
            self.lab_ids = learner._tokenize(lab[0])
            self.lab_y, self.w = torch.from_numpy(lab[1]), lab[2]
            self.cycler = LabeledBatches(lab[1].size, learner.labeled_batch_size, seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.s_all = torch.from_numpy(pseudo)
        self.history: list[dict] = []
        self.best = KeepBest()

    def optimiser(self, steps_per_epoch: int) -> None:
        """AdamW (encoder ``lr``, head ``head_lr``), linear warm-up over ``warmup_ratio`` of the steps, then linear
        decay to 0."""
        L, model = self.learner, self.model
        total = steps_per_epoch * int(L.epochs)
        warmup = int(L.warmup_ratio * total)
        head_lr = L.head_lr if L.head_lr is not None else 100 * L.lr
        groups = [{"params": [p for n, p in model.encoder.named_parameters()], "lr": L.lr},
                  {"params": list(model.head.parameters()), "lr": head_lr}]
        self.opt = torch.optim.AdamW(groups, weight_decay=L.weight_decay)

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda)

    def permutation(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` in this epoch's order (the seeded generator: every Ray worker draws the same)."""
        return rows[torch.randperm(rows.size, generator=self.gen).numpy()]

    def step(self, net: nn.Module, rows: np.ndarray) -> float:
        """One optimiser step on the corpus ``rows`` (and the next labeled batch); returns the loss."""
        L = self.learner
        s = self.s_all[torch.from_numpy(rows)]
        if self.cycler is None:
            loss = batch_risk(self.risk, net(**L._batch(self.ids, rows)), s, self.weights, slope=L.slope)
        else:  # corpus and labeled rows in one padded forward pass
            lrows = self.cycler.next()
            both = [self.ids[i] for i in rows] + [self.lab_ids[j] for j in lrows]
            out = net(**L._batch(both, range(len(both))))
            loss = batch_risk(self.risk, out[: rows.size], s, self.weights, slope=L.slope)
            loss = joint_risk(loss, out[rows.size :], self.lab_y[torch.from_numpy(lrows)], self.w)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), L.max_grad_norm)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def epoch(self, net: nn.Module, order: np.ndarray, batch_size: int, *, bar=None) -> float:
        """Steps over ``order`` in batches of ``batch_size`` rows; returns the mean loss (``bar``: a tqdm bar)."""
        net.train()
        tot_loss, steps = 0.0, 0
        for a in range(0, order.size, batch_size):
            tot_loss += self.step(net, order[a : a + batch_size])
            steps += 1
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{tot_loss / steps:.4f}", refresh=False)
        return tot_loss / max(steps, 1)

    def val_loss(self, g: torch.Tensor, rows: np.ndarray) -> float:
        """The corpus risk of the held-out ``rows`` given their scores ``g`` (what chooses the epoch kept)."""
        return float(batch_risk(self.risk, g, self.s_all[torch.from_numpy(rows)], self.weights, slope=self.learner.slope))

    def end_epoch(self, epoch: int, train_loss: float, val_loss: float | None, t0: float) -> dict:
        """Record the epoch in ``history`` and offer it to ``best`` (criterion: the held-out risk, else the
        training loss); the best epoch's weights are kept (~90 MB for MiniLM) only when a later epoch follows."""
        rec = {"epoch": epoch, "train_loss": train_loss}
        if val_loss is not None:
            rec["val_loss"] = val_loss
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        self.history.append(rec)
        self.best.offer(rec.get("val_loss", train_loss), epoch, self.model, keep=epoch < int(self.learner.epochs))
        return rec
