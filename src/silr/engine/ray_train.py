"""``--engine ray --finetune``: each round's fine-tuning under Ray Train (``ray.train.torch.TorchTrainer``).

:class:`RayTrainFineTuneLearner` is a :class:`~silr.finetune.FineTuneLearner` whose ``fit`` runs the same
training on ``workers`` CPU workers (gloo backend): the model is wrapped by ``prepare_model`` (DDP when more
than one worker), every worker draws the learner's corpus permutation (same seed, same generator) and a
``DistributedSampler`` (no reshuffle) gives worker ``r`` the rows ``r, r + N, ...`` of it, in batches of
``ceil(batch_size / N)`` rows (the global batch stays ``batch_size``). The risk, the optimiser, the schedule and
the epoch choice are the learner's: the validation corpus risk is computed on the scores of ALL held-out rows
(each worker scores its share; the scores are all-reduced), so every worker keeps the same epoch.

With one worker there is no DDP and the steps are the local learner's, in the same order: the labels equal the
local ``FineTuneLearner``'s for the same seed (tested). With N > 1 the per-worker robust risk is averaged over
the workers (a leaky ReLU of per-worker partial risks, not of the global batch's), so labels differ a little.

Fault tolerance: after every epoch rank 0 reports a Ray Train checkpoint (weights, optimiser, schedule, random
states, the best epoch so far); a killed worker makes Ray restart the group (``FailureConfig``), which resumes
from the last checkpoint. A finished round is stored under ``work/ft_rounds/KEY`` (KEY: a hash of the texts,
labels, split, weights, risk, seed, settings and worker count): a restarted driver re-runs the loop and finished
rounds load from disk instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from silr.finetune import FineTuneLearner
from silr.finetune_steps import FineTuneSteps
from silr.io import atomic_path, atomic_write_text
from silr.learners import check_labeled
from silr.risks import UUWeights

__all__ = ["RayTrainFineTuneLearner", "train_loop_per_worker", "refine_texts_finetune_ray"]

_MAX_FAILURES = 3


class RayTrainFineTuneLearner(FineTuneLearner):
    """A :class:`FineTuneLearner` trained under Ray Train on ``workers`` CPU workers (see the module)."""

    def __init__(self, model_dir=None, *, engine=None, work_dir: str | None = None, workers: int = 1, **params):
        super().__init__(model_dir, **params)
        self.engine, self.work_dir, self.workers = engine, work_dir, int(workers)

    def clone(self) -> "RayTrainFineTuneLearner":
        return type(self)(engine=self.engine, work_dir=self.work_dir, workers=self.workers, **self.get_params())

    def _key(self, texts, pseudo, val_mask, weights, risk, seed, lab) -> str:
        h = hashlib.sha256()
        params = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.get_params().items() if k != "progress"}
        h.update(json.dumps([params, weights.__dict__, risk, int(seed), self.workers, str(self._folder())],
                            sort_keys=True, default=str).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
        h.update(np.ascontiguousarray(pseudo, dtype=np.int8).tobytes())
        h.update(np.packbits(np.asarray(val_mask, dtype=bool)).tobytes())
        if lab is not None:
            for t in lab[0]:
                h.update(t.encode("utf-8", "surrogatepass") + b"\x01")
            h.update(np.ascontiguousarray(lab[1], dtype=np.int8).tobytes() + repr(float(lab[2])).encode())
        return h.hexdigest()[:24]

    def fit(self, X, pseudo, weights: UUWeights, *, risk: str = "robust_uu", val_mask=None, seed: int = 0,
            labeled=None):
        if self.engine is None or self.work_dir is None:
            raise ValueError("RayTrainFineTuneLearner needs engine= and work_dir= (the ray engine sets them)")
        texts, pseudo, val_mask = self._fit_inputs(X, pseudo, val_mask)
        if not (~val_mask).any():
            raise ValueError("no training rows: val_mask holds out the whole corpus")
        lab = check_labeled(labeled)
        t0 = time.perf_counter()
        rounds = Path(self.work_dir) / "ft_rounds"
        rounds.mkdir(parents=True, exist_ok=True)
        key = self._key(texts, pseudo, val_mask, weights, risk, seed, lab)
        res_w, res_m = rounds / f"{key}.safetensors", rounds / f"{key}.json"
        self.from_cache_ = res_m.exists() and res_w.exists()
        if not self.from_cache_:
            inputs = rounds / f"{key}.inputs.npz"
            with atomic_path(inputs) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, texts=np.asarray(texts, dtype=str), pseudo=pseudo, val_mask=val_mask,
                         lab_texts=np.asarray([] if lab is None else [str(t) for t in lab[0]], dtype=str),
                         lab_y=np.asarray([] if lab is None else lab[1], dtype=np.int64))
            self._train(key, inputs, weights, risk, int(seed), 0.0 if lab is None else float(lab[2]),
                        lab is not None, res_w, res_m)
            inputs.unlink(missing_ok=True)
        from safetensors.torch import load_file

        meta = json.loads(res_m.read_text())
        with self._threads():
            self._load(None, pretrained=False)
        self.module_.load_state_dict(load_file(str(res_w)), strict=True)
        self.module_.eval()
        self.history_, self.best_epoch_ = meta["history"], int(meta["best_epoch"])
        self.n_truncated_ = int(meta["n_truncated"])
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _train(self, key, inputs, weights, risk, seed, w, has_lab, res_w, res_m):
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
        from safetensors.torch import load_file, save_file

        from silr.engine import connect

        connect(self.engine)
        params = {**self.get_params(), "progress": False}
        params["model_dir"] = None if self.model_dir is None else str(self.model_dir)
        config = {"params": params, "inputs": str(inputs), "weights": weights.__dict__, "risk": risk, "seed": seed,
                  "w": w, "has_lab": has_lab, "work": str(self.work_dir)}
        trainer = TorchTrainer(
            train_loop_per_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=self.workers, use_gpu=False),
            torch_config=TorchConfig(backend="gloo"),
            run_config=RunConfig(name=f"ft-{key}", storage_path=str(Path(self.work_dir).resolve() / "ray_train"),
                                 failure_config=FailureConfig(max_failures=_MAX_FAILURES),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1)))
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        with result.checkpoint.as_directory() as d:
            d = Path(d)
            meta = json.loads((d / "meta.json").read_text())
            chosen = d / ("best.safetensors" if (d / "best.safetensors").exists() else "model.safetensors")
            state = load_file(str(chosen))
        with atomic_path(res_w) as tmp:
            save_file(state, str(tmp))
        atomic_write_text(res_m, json.dumps({"history": meta["history"], "best_epoch": meta["best_epoch"],
                                             "n_truncated": meta["n_truncated"], "workers": self.workers}) + "\n")

    def describe(self) -> dict:
        return {"trainer": "ray.train.torch.TorchTrainer", "workers": self.workers, "backend": "gloo",
                "max_failures": _MAX_FAILURES}


def train_loop_per_worker(config: dict) -> None:
    """One worker of the round's fine-tuning: the learner's own steps (:class:`~silr.finetune_steps.FineTuneSteps`)
    on this worker's share of each epoch's permutation."""
    import ray.train
    import torch.distributed as dist
    from ray.train.torch import prepare_model
    from torch.utils.data import DistributedSampler

    from silr.engine.shards import _test_hold, worker_pid_file

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    worker_pid_file(Path(config["work"]), "fttrain")
    learner = FineTuneLearner(**config["params"])
    if learner.threads:
        torch.set_num_threads(int(learner.threads))
    seed = int(config["seed"])
    with np.load(config["inputs"], allow_pickle=False) as z:
        texts, pseudo, val_mask = z["texts"].tolist(), z["pseudo"], z["val_mask"]
        lab = (z["lab_texts"].tolist(), z["lab_y"], float(config["w"])) if config["has_lab"] else None
    run = FineTuneSteps(learner, texts, pseudo, UUWeights(**config["weights"]), config["risk"], seed, lab)
    model = run.model
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    bs = math.ceil(learner.batch_size / world)
    shard_len = len(DistributedSampler(range(train_idx.size), num_replicas=world, rank=rank, shuffle=False))
    run.optimiser(math.ceil(shard_len / bs))
    start = 1
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a restarted group: resume after the last finished epoch
        with ckpt.as_directory() as d:
            start = _resume(run, Path(d))
    ddp = prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    my_val = val_idx[rank::world]
    my_val_ids = [run.ids[i] for i in my_val]
    for epoch in range(start, int(learner.epochs) + 1):
        t0 = time.perf_counter()
        perm = run.permutation(train_idx)
        mine = perm[list(DistributedSampler(range(perm.size), num_replicas=world, rank=rank, shuffle=False))]
        train_loss = run.epoch(ddp, mine, bs)
        if world > 1:
            t = torch.tensor([train_loss], dtype=torch.float64)
            dist.all_reduce(t)
            train_loss = float(t[0]) / world
        val_loss = None
        if val_idx.size:
            g = torch.zeros(val_idx.size, dtype=torch.float32)
            if my_val.size:
                g[rank::world] = torch.from_numpy(learner._scores(my_val_ids))
            if world > 1:
                dist.all_reduce(g)  # every worker: the scores of all held-out rows
            val_loss = run.val_loss(g, val_idx)
        run.end_epoch(epoch, train_loss, val_loss, t0)
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": float("nan") if val_loss is None else val_loss}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                _save_checkpoint(run, Path(d), epoch)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
        if epoch == 1 and ckpt is None:
            _test_hold("RayTrainWorker")  # tests: a worker held here (after a checkpoint, mid-fit) is killed


def _save_checkpoint(run: FineTuneSteps, d: Path, epoch: int) -> None:
    """Rank 0's checkpoint after ``epoch`` into the folder ``d``: the weights, the kept epoch's weights when they are
    not these (``best.safetensors``), the optimiser, schedule, generators and labeled-batch position, the history."""
    from safetensors.torch import save_file

    best, cycler = run.best, run.cycler
    save_file({k: v.detach().contiguous() for k, v in run.model.state_dict().items()}, str(d / "model.safetensors"))
    if best.state is not None and best.epoch != epoch:
        save_file({k: v.contiguous() for k, v in best.state.items()}, str(d / "best.safetensors"))
    torch.save({"opt": run.opt.state_dict(), "sched": run.sched.state_dict(), "gen": run.gen.get_state(),
                "rng": torch.get_rng_state(), "cycler": None if cycler is None else
                {"perm": cycler._perm, "pos": cycler._pos, "gen": cycler._gen.get_state()}},
               d / "train_state.pt")
    (d / "meta.json").write_text(json.dumps({"epoch": epoch, "history": run.history, "best_crit": best.crit,
                                             "best_epoch": best.epoch, "n_truncated": run.n_truncated}))


def _resume(run: FineTuneSteps, d: Path) -> int:
    """Load the checkpoint in the folder ``d`` (written by :func:`_save_checkpoint`) into ``run``, which holds a fresh
    model and optimiser; returns the epoch to train next."""
    from safetensors.torch import load_file

    meta = json.loads((d / "meta.json").read_text())
    run.model.load_state_dict(load_file(str(d / "model.safetensors")))
    if (d / "best.safetensors").exists():
        run.best.state = load_file(str(d / "best.safetensors"))
    elif meta["best_epoch"] == meta["epoch"] < int(run.learner.epochs):
        # the checkpoint's epoch is the best so far: its weights (not written twice) are kept as the model's are
        run.best.state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    st = torch.load(d / "train_state.pt", weights_only=False)
    run.opt.load_state_dict(st["opt"])
    run.sched.load_state_dict(st["sched"])
    run.gen.set_state(st["gen"])
    torch.set_rng_state(st["rng"])
    if run.cycler is not None:
        run.cycler._perm, run.cycler._pos = st["cycler"]["perm"], st["cycler"]["pos"]
        run.cycler._gen.set_state(st["cycler"]["gen"])
    run.history, run.best.crit, run.best.epoch = meta["history"], meta["best_crit"], meta["best_epoch"]
    return meta["epoch"] + 1


def refine_texts_finetune_ray(inputs, *, engine, learner: FineTuneLearner, backbone="minilm", rounds: int = 5,
                              seed: int = 0, progress: bool = True, cache_dir=None, on_round=None, work_dir=None,
                              **refiner_params):
    """:func:`silr.texts.refine_texts` with ``learner``'s fine-tuning run under Ray Train each round
    (``engine.workers`` workers, default one per CPU of the cluster); the loop and the corpus scoring run on the
    driver. ``work_dir`` holds the finished rounds (a rerun resumes from them) and Ray Train's checkpoints."""
    from silr.engine import default_workers
    from silr.engine.ray_refine import default_work_dir
    from silr.texts import refine_texts

    workers = default_workers(engine)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in learner.get_params().items()}
    work = Path(work_dir) if work_dir else default_work_dir(inputs, {"finetune": params}, cache_dir)
    rl = RayTrainFineTuneLearner(engine=engine, work_dir=str(work), workers=workers, **learner.get_params())
    result = refine_texts(inputs, backbone=backbone, rounds=rounds, seed=seed, progress=progress,
                          cache_dir=cache_dir, on_round=on_round, learner=rl, **refiner_params)
    result.summary["engine"] = {**engine.describe(), "work_dir": str(work), "train": rl.describe()}
    result.summary["learner"]["workers"] = workers
    return result
