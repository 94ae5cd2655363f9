"""benchmarks/SCALE.md's measurements, each a separate process whose result goes to
benchmarks/results/scale/NAME.json (finished runs are skipped: the script resumes).

    nice -n 10 python benchmarks/scale_bench.py all          # every run below, in order
    python benchmarks/scale_bench.py refine --n 1000000 --engine ray --workers 2
    python benchmarks/scale_bench.py annotate --n 240 --workers 1

Corpus: benchmarks/scale_corpus.py (SST-2 + MR, 20,264 real rows, pseudo-labels from a stated noise model),
resampled with replacement to N rows (numpy seed 1); 50 rows of the resampled corpus get their gold label (seed 2).
Features: all-MiniLM-L6-v2, cached by text (the 16,040 distinct texts were encoded once beforehand), 5 rounds,
seed 0. Memory: a sampler thread reads every 0.5 s the resident set (RSS) of this process and of all its
descendants (the local Ray cluster's GCS, raylet and workers when the Ray engine starts one) and keeps the peak of
their sum, and of the driver alone; file-backed pages (the memory-mapped feature store) are counted in every
process that maps them, so the sum over-counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale"
WORK = HERE / "scale"


def corpus(n: int) -> pd.DataFrame:
    base = pd.read_parquet(WORK / "corpus20k.parquet")
    if n == len(base):
        return base
    idx = np.random.default_rng(1).integers(0, len(base), n)
    return base.iloc[idx].reset_index(drop=True)


class PeakMemory:
    """Peak RSS of this process and of the sum over its process tree, sampled every ``every`` seconds."""

    def __init__(self, every: float = 0.5):
        import psutil

        self.me = psutil.Process()
        self.every, self.peak_tree, self.peak_self, self.peak_anon_self = every, 0, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil

        procs = [self.me] + self.me.children(recursive=True)
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_tree = max(self.peak_tree, total)
        mi = self.me.memory_info()
        self.peak_self = max(self.peak_self, mi.rss)
        self.peak_anon_self = max(self.peak_anon_self, mi.rss - getattr(mi, "shared", 0))  # minus file-backed

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._sample()


_COMMIT_AT_START: str | None = None  # the code a run executes is the checkout when it starts


def _machine() -> dict:
    import platform

    import torch

    return {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "ray": _ray_version(), "commit": _COMMIT_AT_START or _commit()}


def _ray_version():
    try:
        import ray

        return ray.__version__
    except ImportError:
        return None


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def run_refine(n: int, engine: str, workers: int, rounds: int = 5, start_gap_lower="auto") -> dict:
    import resource

    import torch

    torch.set_num_threads(1)
    from silr.inputs import RefineInputs

    df = corpus(n)
    lab = np.sort(np.random.default_rng(2).choice(n, 50, replace=False))
    inputs = RefineInputs(df["text"].tolist(), df["pseudo_label"].to_numpy(), df["text"].iloc[lab].tolist(),
                          df["gold"].to_numpy()[lab], df["pseudo_label"].to_numpy()[lab],
                          llm_score=df["llm_score"].to_numpy(), labeled_llm_score=df["llm_score"].to_numpy()[lab])
    gold = df["gold"].to_numpy()
    del df
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        if engine == "local":
            from silr.texts import refine_texts

            res = refine_texts(inputs, backbone="minilm", rounds=rounds, seed=0, progress=False,
                               start_gap_lower=start_gap_lower)
        else:
            from silr.engine import resolve_engine
            from silr.engine.ray_refine import refine_texts_ray

            eng = resolve_engine("ray", num_cpus=2, workers=workers, rows_per_shard=50_000)
            res = refine_texts_ray(inputs, engine=eng, backbone="minilm", rounds=rounds, seed=0, progress=False,
                                   work_dir=WORK / "work" / f"n{n}-w{workers}", start_gap_lower=start_gap_lower)
    wall = time.perf_counter() - t0
    labels = res.labels
    phases = {r["round"]: r.get("seconds") for r in res.summary["rounds"]}
    out = {"n": n, "engine": engine, "start_gap_lower": start_gap_lower, "workers": workers if engine == "ray" else None, "rounds_run": res.refiner.n_rounds_,
           "wall_s": wall, "per_row_us": wall / n * 1e6, "peak_rss_tree_gib": mem.peak_tree / 2**30,
           "peak_rss_driver_gib": mem.peak_self / 2**30, "peak_rss_driver_not_file_gib": mem.peak_anon_self / 2**30,
           "ru_maxrss_driver_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "round_seconds": phases, "final_source": res.summary["final_source"],
           "accuracy_round0": float((labels["round_0"].to_numpy() == gold).mean()),
           "accuracy_final": float((labels["final"].to_numpy() == gold).mean()),
           "machine": _machine()}
    np.save(RESULTS / f"labels-{engine}-n{n}-w{workers}.npy",
            np.vstack([labels[c].to_numpy() for c in labels.columns if c != "score"]).astype(np.int8))
    return out


def run_annotate(n: int, workers: int) -> dict:
    """Gemma-3-270M on CPU scores N real texts (SST-2 + MR) on the Ray engine with WORKERS actors; a fresh shards
    folder and no global score cache, so every text is really scored."""
    import shutil

    from silr.annotate.prompts import load_prompt
    from silr.engine import resolve_engine
    from silr.engine.ray_annotate import annotate_on_ray, shards_dir

    df = corpus(20264).drop_duplicates("text").sample(n + 8, random_state=3)
    src = WORK / f"annotate-{n}.csv"
    df[["text"]].iloc[:n].to_csv(src, index=False)
    lab = df.iloc[n:].rename(columns={"gold": "label"})[["text", "label"]]
    out = WORK / f"annotated-{n}-w{workers}.parquet"
    shutil.rmtree(shards_dir(out), ignore_errors=True)
    eng = resolve_engine("ray", num_cpus=2, workers=workers, rows_per_shard=max(1, n // (2 * workers)))
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        rec = annotate_on_ray(eng, src, out, text_col="text", model="gemma-3-270m", spec=load_prompt("sentiment"),
                              labeled=lab, shots=4, threshold="accuracy", seed=0, label_col="label",
                              annotator_kwargs={"batch_size": 8, "max_text_tokens": 128}, base_url=None, cache=None)
    wall = time.perf_counter() - t0
    return {"n": n, "workers": workers, "wall_s": wall, "texts_per_s": (n + len(lab)) / wall,
            "scored": rec["counts"]["scored"], "peak_rss_tree_gib": mem.peak_tree / 2**30, "machine": _machine()}


PLAN = [  # (name, argv), most important first
    ("refine-ray-n10000-w2", ["refine", "--n", "10000", "--engine", "ray", "--workers", "2"]),
    ("refine-local-n10000", ["refine", "--n", "10000", "--engine", "local"]),
    ("refine-ray-n20264-w2", ["refine", "--n", "20264", "--engine", "ray", "--workers", "2"]),
    ("refine-local-n20264", ["refine", "--n", "20264", "--engine", "local"]),
    ("refine-ray-n1000000-w2", ["refine", "--n", "1000000", "--engine", "ray", "--workers", "2"]),
    ("refine-local-n1000000", ["refine", "--n", "1000000", "--engine", "local"]),
    ("refine-ray-n100000-w1", ["refine", "--n", "100000", "--engine", "ray", "--workers", "1", "--start-gap-lower", "none"]),
    ("refine-ray-n100000-w2", ["refine", "--n", "100000", "--engine", "ray", "--workers", "2", "--start-gap-lower", "none"]),
    ("refine-local-n100000", ["refine", "--n", "100000", "--engine", "local", "--start-gap-lower", "none"]),
    ("annotate-n240-w1", ["annotate", "--n", "240", "--workers", "1"]),
    ("annotate-n240-w2", ["annotate", "--n", "240", "--workers", "2"]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["all", "refine", "annotate"])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--engine", default="ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated run names (with 'all')")
    ap.add_argument("--start-gap-lower", default="auto",
                    help="the refiner's start_gap_lower: auto (default), none (the round-0 interval check off) or a number")
    a = ap.parse_args()
    global _COMMIT_AT_START
    _COMMIT_AT_START = _commit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.what == "all":
        only = set(filter(None, a.only.split(",")))
        for name, argv in PLAN:
            f = RESULTS / f"{name}.json"
            if f.exists() or (only and name not in only):
                continue
            print(f"--- {name}", flush=True)
            r = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-4000:], flush=True)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            f.write_text(json.dumps(res, indent=2) + "\n")
            print(json.dumps(res), flush=True)
        return
    sgl = {"auto": "auto", "none": None}.get(a.start_gap_lower.lower(), None)
    if a.start_gap_lower.lower() not in ("auto", "none"):
        sgl = float(a.start_gap_lower)
    res = run_refine(a.n, a.engine, a.workers, start_gap_lower=sgl) if a.what == "refine" else run_annotate(a.n, a.workers)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
