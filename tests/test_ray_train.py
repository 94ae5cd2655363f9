"""``--engine ray --finetune``: the fine-tuning learner under Ray Train (``TorchTrainer``, gloo, CPU workers) on a
local cluster (``ray.init(num_cpus=2)``), a tiny BERT on 300 real Rotten Tomatoes snippets: one worker gives the
local learner's scores bit for bit; two workers (DDP) choose the epoch by the validation risk of all held-out rows;
a worker killed mid-fit is restarted from the last epoch checkpoint with the same scores; a finished round loads
from disk; ``refine_texts_ray(learner=...)`` gives the local labels and records engine, workers and learner."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.train")

sys.path.insert(0, str(Path(__file__).parent))
from tinymodels import tiny_bert  # noqa: E402

pytestmark = pytest.mark.heavy

KW = dict(lr=2e-3, head_lr=1e-2, epochs=2, batch_size=16, max_length=32, progress=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, silr_cache):
    hold = tmp_path_factory.mktemp("hold")
    (hold / "go").write_text("")
    os.environ["SILR_ENGINE_TEST_HOLD"] = f"RayTrainWorker:{hold}"
    from silr.engine import connect, resolve_engine

    eng = resolve_engine("ray", num_cpus=2, workers=1)
    connect(eng)
    yield eng, hold
    ray.shutdown()
    os.environ.pop("SILR_ENGINE_TEST_HOLD", None)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from silr.corpora import load_embedded
    from silr.risks import UUWeights

    tiny = tiny_bert(tmp_path_factory.mktemp("tinybert"), layers=1, max_positions=64)
    df = load_embedded("rotten_tomatoes").sample(300, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy()
    s = np.where(np.where(y == 1, rng.random(300) < 0.3, rng.random(300) < 0.1), 1 - y, y)
    val = np.zeros(300, bool)
    val[::5] = True
    return dict(tiny=str(tiny), texts=df["text"].tolist(), y=y, s=s, val=val,
                w=UUWeights.from_priors(float(y.mean()), 0.7, 0.1))


@pytest.fixture(scope="module")
def local_fit(task):
    from silr.finetune import FineTuneLearner

    m = FineTuneLearner(task["tiny"], **KW).fit(task["texts"], task["s"], task["w"], val_mask=task["val"], seed=0)
    return m, m.decision_function(task["texts"])


def _ray_learner(cluster, task, work, workers):
    from silr.engine.ray_train import RayTrainFineTuneLearner

    return RayTrainFineTuneLearner(task["tiny"], engine=cluster[0], work_dir=str(work), workers=workers, **KW)


def _fit(learner, task):
    return learner.fit(task["texts"], task["s"], task["w"], val_mask=task["val"], seed=0)


def test_one_worker_gives_the_local_learners_scores(cluster, task, local_fit, tmp_path):
    local, g_local = local_fit
    m = _fit(_ray_learner(cluster, task, tmp_path, 1), task)
    g = m.decision_function(task["texts"])
    np.testing.assert_array_equal(g, g_local)  # bit for bit: same steps, same order, no DDP with one worker
    assert m.best_epoch_ == local.best_epoch_
    assert [h["val_loss"] for h in m.history_] == [h["val_loss"] for h in local.history_]
    assert not m.from_cache_
    # a restarted driver: the finished round loads from disk (no training), same scores
    again = _fit(_ray_learner(cluster, task, tmp_path, 1), task)
    assert again.from_cache_
    np.testing.assert_array_equal(again.decision_function(task["texts"]), g_local)
    assert len(list((tmp_path / "workers").glob("fttrain-*"))) == 1  # one training worker ever started


def test_two_workers_ddp_choose_the_epoch_on_all_held_out_rows(cluster, task, local_fit, tmp_path):
    from silr.risks import batch_risk

    _, g_local = local_fit
    m = _fit(_ray_learner(cluster, task, tmp_path, 2), task)
    assert len(list((tmp_path / "workers").glob("fttrain-*"))) == 2
    assert [h["epoch"] for h in m.history_] == [1, 2] and 1 <= m.best_epoch_ <= 2
    best = min(m.history_, key=lambda h: h["val_loss"])
    assert best["epoch"] == m.best_epoch_
    # the recorded validation risk is the risk of ALL held-out rows under the kept weights (not one worker's half)
    import torch

    val = task["val"]
    g = m.decision_function([t for t, v in zip(task["texts"], val) if v])
    r = float(batch_risk("robust_uu", torch.from_numpy(g), torch.from_numpy(task["s"][val]), task["w"]))
    assert r == pytest.approx(best["val_loss"], abs=1e-5)
    g2 = m.decision_function(task["texts"])
    assert not np.array_equal(g2, g_local)  # two workers: a different (data-parallel) run
    assert np.isfinite(g2).all()


def test_a_training_worker_killed_mid_fit_resumes_from_its_checkpoint(cluster, task, local_fit, tmp_path):
    _, g_local = local_fit
    eng, hold = cluster
    for f in hold.glob("held-*"):  # earlier fits passed the (open) hold
        f.unlink()
    (hold / "go").unlink()
    box: dict = {}

    def killer():
        end = time.monotonic() + 240
        while not list(hold.glob("held-*")) and time.monotonic() < end:
            time.sleep(0.05)
        held = list(hold.glob("held-*"))
        if held:
            box["victim"] = int(held[0].read_text())
            os.kill(box["victim"], signal.SIGKILL)  # dies after epoch 1's checkpoint, before epoch 2
        (hold / "go").write_text("")

    th = threading.Thread(target=killer)
    th.start()
    try:
        m = _fit(_ray_learner(cluster, task, tmp_path, 1), task)
    finally:
        (hold / "go").write_text("")
        th.join()
    assert "victim" in box
    pids = [int(p.name.split("-")[1]) for p in (tmp_path / "workers").glob("fttrain-*")]
    assert box["victim"] in pids and len(pids) == 2  # the group was restarted
    np.testing.assert_array_equal(m.decision_function(task["texts"]), g_local)  # resumed exactly


def test_refine_texts_ray_finetune_gives_the_local_labels_and_records_the_engine(cluster, task, tmp_path):
    from silr.engine.ray_refine import refine_texts_ray
    from silr.finetune import FineTuneLearner
    from silr.inputs import RefineInputs
    from silr.run_folder import write_run
    from silr.texts import refine_texts

    t, s, y = task["texts"], task["s"], task["y"]
    lab = np.sort(np.random.default_rng(1).choice(300, 40, replace=False))
    inputs = RefineInputs(t, s, [t[i] for i in lab], y[lab], s[lab])
    loc = refine_texts(inputs, rounds=2, seed=0, progress=False, learner=FineTuneLearner(task["tiny"], **KW))
    res = refine_texts_ray(inputs, engine=cluster[0], rounds=2, seed=0, progress=False, work_dir=tmp_path / "work",
                           learner=FineTuneLearner(task["tiny"], **KW))
    assert list(res.labels.columns) == list(loc.labels.columns)
    for c in loc.labels.columns:
        np.testing.assert_array_equal(res.labels[c].to_numpy(), loc.labels[c].to_numpy())
    write_run(res, tmp_path / "run", report=False)
    import json

    rounds = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert rounds["engine"]["kind"] == "ray" and rounds["engine"]["train"]["workers"] == 1
    assert rounds["engine"]["train"]["trainer"] == "ray.train.torch.TorchTrainer"
    assert rounds["learner"]["kind"] == "RayTrainFineTuneLearner" and rounds["learner"]["workers"] == 1
    # a rerun of the same job (a restarted driver) loads every finished round from disk: no training worker starts
    started = sorted((tmp_path / "work" / "workers").glob("fttrain-*"))
    assert started
    again = refine_texts_ray(inputs, engine=cluster[0], rounds=2, seed=0, progress=False, work_dir=tmp_path / "work",
                             learner=FineTuneLearner(task["tiny"], **KW))
    assert sorted((tmp_path / "work" / "workers").glob("fttrain-*")) == started
    np.testing.assert_array_equal(again.labels["final"].to_numpy(), loc.labels["final"].to_numpy())
