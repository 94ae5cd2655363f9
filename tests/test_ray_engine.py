"""The Ray engine on a local cluster (``ray.init(num_cpus=2)``) on small real data: the same labels as the local
engine, annotation with a worker killed mid-shard (every text scored once), a round whose training worker is
killed mid-call (retried, same labels). Marked heavy (a Ray cluster and MiniLM features: ~2-3 min)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).parent))
from fakeserver import ScriptedServer  # noqa: E402

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, silr_cache):
    hold = tmp_path_factory.mktemp("hold")
    (hold / "go").write_text("")
    os.environ["SILR_ENGINE_TEST_HOLD"] = f"_TrainWorker:{hold}"
    from silr.engine import connect, resolve_engine

    eng = resolve_engine("ray", num_cpus=2, workers=2, rows_per_shard=200)
    connect(eng)
    yield eng, hold
    ray.shutdown()
    os.environ.pop("SILR_ENGINE_TEST_HOLD", None)


def _inputs(rt_task, n=800):
    from silr.inputs import RefineInputs

    df, _ = rt_task
    df = df.iloc[:n]
    lab = np.sort(np.random.default_rng(1).choice(n, 50, replace=False))
    return RefineInputs(df["text"].tolist(), df["pseudo_label"].to_numpy(), df["text"].iloc[lab].tolist(),
                        df["label"].to_numpy()[lab], df["pseudo_label"].to_numpy()[lab])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _committed(folder: Path) -> int:
    """Scores committed to the shards' caches so far."""
    import sqlite3

    n = 0
    for f in folder.glob("*.scores.sqlite"):
        try:
            conn = sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=10)
            n += conn.execute("SELECT count(*) FROM scores").fetchone()[0]
            conn.close()
        except sqlite3.DatabaseError:
            return -1
    return n


def _kill_with_cluster(p) -> None:
    """SIGKILL the driver's process group and every process it started (Ray's GCS, raylet and workers, wherever
    their process group), then wait until they are all gone: an orphaned worker must not reach the test's server
    or files after the kill (it once answered a held request again after the gate opened)."""
    try:
        import psutil

        tree = psutil.Process(p.pid).children(recursive=True)
    except Exception:  # psutil missing or the driver gone already: the process group is all we can reach
        psutil, tree = None, []
    os.killpg(p.pid, signal.SIGKILL)
    for c in tree:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass
    p.wait(30)
    if tree:
        _, alive = psutil.wait_procs(tree, timeout=60)
        assert not alive, f"processes of the killed run still alive: {alive}"


def _wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local_run(rt_task, silr_cache):
    from silr.texts import refine_texts

    return refine_texts(_inputs(rt_task), backbone="minilm", rounds=3, seed=0, progress=False)


def test_ray_refine_gives_the_local_labels(cluster, rt_task, local_run, tmp_path):
    from silr.engine.ray_refine import refine_texts_ray

    eng, _ = cluster
    res = refine_texts_ray(_inputs(rt_task), engine=eng, backbone="minilm", rounds=3, seed=0, progress=False,
                           work_dir=tmp_path / "work")
    a, b = local_run.labels, res.labels
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if c == "score":
            assert np.abs(a[c].to_numpy() - b[c].to_numpy()).max() < 1e-4
        else:
            assert (a[c].to_numpy() == b[c].to_numpy()).mean() >= 0.99, c
    assert res.summary["engine"]["kind"] == "ray" and local_run.summary["engine"] == {"kind": "local"}
    assert len(list((tmp_path / "work" / "rounds").glob("*.json"))) == res.refiner.n_rounds_
    assert len(list((tmp_path / "work" / "features").glob("done-*"))) == 4  # 800 rows / 200 per shard


def test_ray_round_worker_killed_mid_training_is_retried(cluster, rt_task, local_run, tmp_path):
    from silr.engine.ray_refine import refine_texts_ray

    eng, hold = cluster
    for f in hold.glob("held-*"):  # left by earlier runs' workers (they passed without holding)
        f.unlink()
    (hold / "go").unlink()
    out = {}
    t = threading.Thread(target=lambda: out.update(res=refine_texts_ray(
        _inputs(rt_task), engine=eng, backbone="minilm", rounds=3, seed=0, progress=False,
        work_dir=tmp_path / "work")))
    t.start()
    try:
        _wait(lambda: list(hold.glob("held-*")), 180, "the round-1 training worker")
        victim = int(next(hold.glob("held-*")).read_text())
        os.kill(victim, signal.SIGKILL)  # the worker dies in the middle of the round's training call
        _wait(lambda: any(int(p.read_text()) != victim for p in hold.glob("held-*")), 120, "the restarted worker")
    finally:
        (hold / "go").write_text("")
    t.join(600)
    res = out["res"]
    for c in local_run.labels.columns:
        if c != "score":
            assert (res.labels[c].to_numpy() == local_run.labels[c].to_numpy()).mean() >= 0.99, c
    assert res.refiner.n_rounds_ == local_run.refiner.n_rounds_


def test_ray_annotation_worker_killed_mid_shard_scores_every_text_once(cluster, rt_task, tmp_path):
    from silr.annotate.prompts import spec_from_instruction
    from silr.engine.ray_annotate import annotate_on_ray, shards_dir

    eng, _ = cluster
    df, lab = rt_task
    corpus = tmp_path / "corpus.csv"
    df[["text"]].iloc[:600].to_csv(corpus, index=False)
    srv = ScriptedServer(fail=0.0, gate_after=150)
    out = tmp_path / "out.parquet"
    spec = spec_from_instruction("Is this movie review positive or negative?", "positive,negative")
    res = {}

    def go():
        res["record"] = annotate_on_ray(
            eng, corpus, out, text_col="text", model="openai:fake", spec=spec, labeled=lab[["text", "label"]],
            shots=2, threshold="accuracy", seed=0, label_col="label",
            annotator_kwargs={"api": "completions", "concurrency": 2, "timeout": 2.0}, base_url=srv.url,
            cache=None)

    t = threading.Thread(target=go)
    t.start()
    try:
        # both workers mid-shard with requests held by the server, and every answer they received committed (as
        # in the local engine's fault test: an answer received but not yet committed when its worker dies is
        # asked again, which the docs allow: at most the requests in flight)
        _wait(lambda: srv.held >= 4, 240, "both workers blocked mid-shard")
        # (no request between the server's gate and its answer: every request in flight is a held one, so the
        # count of answers is final before it is compared with what the workers committed)
        _wait(lambda: srv.inflight == srv.held and _committed(shards_dir(out)) == len(srv.scored), 60,
              "the workers to commit what they received")
        pids = [int(p.read_text()) for p in sorted((shards_dir(out) / "workers").glob("annotate-*"))]
        victim = next(p for p in pids if _alive(p))  # the labeled sample's worker has gone already
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.0)
    finally:
        srv.release_gate()
    t.join(600)
    srv.close()
    got = pd.read_parquet(out)
    assert len(got) == 600 and got["llm_score"].notna().all()
    texts = {t.strip() for t in list(df["text"].iloc[:600]) + list(lab["text"])}
    assert len(srv.scored) == len(texts)  # the server sees each prompt's text (stripped, maybe cut), once
    assert max(srv.scored.values()) == 1  # every text scored exactly once, the killed worker's shard included
    c = res["record"]["counts"]
    assert c["rows"] == 600 and c["positive"] + c["negative"] == 600
    # the killed worker's shard resumed from its score cache: what it had committed was not asked again
    assert sum(srv.scored.values()) == len(texts)


def test_ray_driver_killed_mid_round_resumes_from_the_last_finished_round(rt_task, local_run, tmp_path, silr_cache):
    """``silr refine --engine ray`` killed (SIGKILL) while round 2 trains; the same command again finishes from
    the stored features and round 1's checkpoint (neither is recomputed) with the uninterrupted run's labels."""
    import subprocess

    df, _ = rt_task
    inp = _inputs(rt_task)
    corpus, lab = tmp_path / "corpus.csv", tmp_path / "lab.csv"
    pd.DataFrame({"text": inp.texts, "pseudo_label": inp.pseudo}).to_csv(corpus, index=False)
    pd.DataFrame({"text": inp.labeled_texts, "label": inp.labeled_y, "pseudo_label": inp.labeled_pseudo}).to_csv(lab, index=False)
    hold = tmp_path / "hold"
    hold.mkdir()
    # the MiniLM features of these texts are already in the session cache: share them
    env = {**os.environ, "SILR_CACHE_DIR": str(silr_cache), "SILR_ENGINE_TEST_HOLD": f"_TrainWorker:{hold}"}
    cmd = [sys.executable, "-m", "silr.cli", "refine", str(corpus), "--pseudo-col", "pseudo_label", "--labeled", str(lab),
           "--out", str(tmp_path / "run"), "--backbone", "minilm", "--rounds", "3", "--engine", "ray", "--no-report",
           "--quiet"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: list(hold.glob("held-*")), 240, "round 1's training call")
        (hold / "go").write_text("")
        rounds = lambda: list(Path(silr_cache, "engine").glob("*/rounds/*.json"))  # noqa: E731
        _wait(lambda: len(rounds()) == 1, 120, "round 1's checkpoint")
        (hold / "go").unlink()  # round 2's training call will wait
        first = rounds()[0]
        stamp = first.stat().st_mtime_ns
        markers = {f: f.stat().st_mtime_ns for f in first.parent.parent.glob("features/done-*")}
        _wait(lambda: len(list(hold.glob("held-*"))) >= 2, 120, "round 2's training call")
        _kill_with_cluster(p)  # the driver (and the local cluster it started) dies mid-round
    finally:
        (hold / "go").write_text("")
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    env.pop("SILR_ENGINE_TEST_HOLD")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert first.stat().st_mtime_ns == stamp  # round 1 was loaded, not trained again
    assert {f: f.stat().st_mtime_ns for f in markers} == markers  # no feature shard was recomputed
    got = pd.read_csv(tmp_path / "run" / "labels.csv")
    for c in local_run.labels.columns:
        if c != "score":
            assert (got[c].to_numpy() == local_run.labels[c].to_numpy()).mean() >= 0.99, c
    summary = __import__("json").loads((tmp_path / "run" / "rounds.json").read_text())
    assert summary["engine"]["kind"] == "ray"


def test_silr_run_with_an_engine_section_and_predict_on_ray(rt_task, tmp_path, silr_cache):
    """``silr run`` with ``[engine] kind = "ray"`` (pseudo-labels given), then ``silr predict --engine ray`` gives
    the local engine's predictions."""
    import json
    import subprocess

    df, _ = rt_task
    corpus = tmp_path / "corpus.csv"
    df[["text", "pseudo_label", "label"]].iloc[:600].rename(columns={"label": "gold"}).to_csv(corpus, index=False)
    (tmp_path / "job.toml").write_text(
        '[data]\ncorpus = "corpus.csv"\npseudo_col = "pseudo_label"\ngold_col = "gold"\n'
        '[labeled]\nsample_from_gold = 50\n[refine]\nbackbone = "minilm"\nrounds = 2\n'
        '[engine]\nkind = "ray"\nworkers = 2\nrows_per_shard = 150\n')
    env = {**os.environ, "SILR_CACHE_DIR": str(silr_cache)}
    env.pop("SILR_ENGINE_TEST_HOLD", None)
    silr = [sys.executable, "-m", "silr.cli"]
    r = subprocess.run(silr + ["run", str(tmp_path / "job.toml"), "--out", str(tmp_path / "run"), "--quiet"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert summary["engine"]["kind"] == "ray" and summary["engine"]["rows_per_shard"] == 150
    new = tmp_path / "new.csv"
    df[["text"]].iloc[600:900].to_csv(new, index=False)
    for engine in ("local", "ray"):
        r = subprocess.run(silr + ["predict", str(tmp_path / "run"), str(new), "--out", str(tmp_path / f"p-{engine}.csv"),
                                   "--engine", engine, "--quiet"], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = pd.read_csv(tmp_path / "p-local.csv"), pd.read_csv(tmp_path / "p-ray.csv")
    assert len(b) == 300 and (a["label"] == b["label"]).all()
    assert np.allclose(a["score"], b["score"], atol=1e-5)


def test_ray_annotate_driver_killed_resumes_from_the_finished_shards(rt_task, tmp_path):
    """``silr annotate --engine ray`` killed (SIGKILL, with the cluster it started) while its workers wait on the
    server; the same command again skips the finished shards (their files untouched), resumes the cut shards from
    their score caches, and no text is scored twice."""
    import subprocess

    df, lab = rt_task
    corpus, labeled, out = tmp_path / "corpus.csv", tmp_path / "lab.csv", tmp_path / "out.csv"
    df[["text"]].iloc[:400].to_csv(corpus, index=False)
    lab[["text", "label"]].to_csv(labeled, index=False)
    srv = ScriptedServer(fail=0.0, gate_after=250)
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.pop("SILR_ENGINE_TEST_HOLD", None)
    cmd = [sys.executable, "-m", "silr.cli", "annotate", str(corpus), "--out", str(out), "--model", "openai:fake",
           "--base-url", srv.url, "--api", "completions", "--instruction", "Is this movie review positive or negative?",
           "--label-words", "positive,negative", "--labeled", str(labeled), "--shots", "2", "--concurrency", "2",
           "--timeout", "2", "--no-cache", "--quiet", "--engine", "ray", "--workers", "2", "--rows-per-shard", "50"]
    parts = lambda: sorted((tmp_path / "out.csv.shards").glob("part-*.parquet"))  # noqa: E731
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: srv.held >= 2 and len(parts()) >= 2, 300, "finished shards and workers held mid-shard")
        _wait(lambda: srv.inflight == srv.held and _committed(tmp_path / "out.csv.shards") == len(srv.scored), 60,
              "the workers to commit what they received")  # see the test above
        done = {f: f.stat().st_mtime_ns for f in parts()}
        _kill_with_cluster(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        srv.release_gate()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    srv.close()
    assert r.returncode == 0, r.stderr[-2000:]
    assert {f: f.stat().st_mtime_ns for f in done} == done  # finished shards were not redone
    got = pd.read_csv(out)
    assert len(got) == 400 and got["llm_score"].notna().all()
    assert len(srv.scored) == len({t.strip() for t in list(df["text"].iloc[:400]) + list(lab["text"])})
    assert max(srv.scored.values()) == 1


def test_a_workers_user_error_reaches_the_driver_as_one_line(cluster):
    from silr.engine.shards import run_pool

    class _Refuses:  # defined here: pickled by value, so the workers need not import this test module
        def __call__(self, item):
            raise ValueError(f"input file 'x.csv' row {item['row']}: empty text")

    eng, _ = cluster
    with pytest.raises(ValueError, match=r"^input file 'x.csv' row 7: empty text$"):
        run_pool(eng, [{"row": 7}], _Refuses, workers=1)


def test_ray_refine_weights_a_silr_sample_design_like_the_local_engine(cluster, rt_task, tmp_path, silr_cache):
    """Labeled rows drawn by `silr sample` are matched by corpus row and weighted by their design on the Ray engine
    too (it used to match them by text and treat them as a uniform sample)."""
    from silr.engine.ray_refine import refine_texts_ray
    from silr.inputs import RefineInputs
    from silr.sampling import make_design
    from silr.texts import refine_texts

    df, _ = rt_task
    df = df.iloc[:800]
    pseudo, y = df["pseudo_label"].to_numpy(), df["label"].to_numpy()
    design = make_design(pseudo, n=50, seed=0)
    rows = design.rows

    def inputs(with_design):
        return RefineInputs(df["text"].tolist(), pseudo, df["text"].iloc[rows].tolist(), y[rows], pseudo[rows],
                            labeled_rows=rows if with_design else None, design=design if with_design else None)

    eng, _ = cluster
    local = refine_texts(inputs(True), backbone="minilm", rounds=1, seed=0, progress=False)
    ray_res = refine_texts_ray(inputs(True), engine=eng, backbone="minilm", rounds=1, seed=0, progress=False,
                               work_dir=tmp_path / "work")
    plain = refine_texts(inputs(False), backbone="minilm", rounds=1, seed=0, progress=False)
    r_local, r_ray, r_plain = (r.summary["rounds"][0] for r in (local, ray_res, plain))
    for k in ("pi", "theta_p", "theta_n"):
        assert r_ray[k] == pytest.approx(r_local[k]), k
    assert abs(r_plain["pi"] - r_local["pi"]) > 1e-6  # the design is what the two engines share
