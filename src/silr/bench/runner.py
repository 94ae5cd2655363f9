"""Run the benchmark: tasks x pseudo-label settings x seeds x methods, one JSON file per run."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from silr.bench.data import Task, load_task, task_features
from silr.bench.groups import group_of
from silr.bench.methods import METHODS, Inputs, run_method
from silr.bench.noise import NoiseSpec, make_noise, text_hardness
from silr.io.atomic import atomic_write_text, json_default

__all__ = ["RunConfig", "run_suite", "sample_labeled", "llm_pseudo_labels", "load_llm_scores", "run_one"]

N_LABELED = 50

#: SelfIterativeRefiner parameters the benchmark uses unless told otherwise: the refiner's defaults with 20
#: epochs a round instead of 60 (the validation-picked epoch of round 1 is <= 10 on every data set tried, later
#: rounds gain nothing from 20 more; a third of the CPU time).
BENCH_SILR = {"epochs": 20}


@dataclass
class RunConfig:
    datasets: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    tracks: list[str] = field(default_factory=lambda: ["noise", "llm"])
    noise: list[str] = field(default_factory=lambda: ["cc70", "cc60", "id70", "id60"])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    max_corpus: int = 3000
    max_test: int = 1000
    n_labeled: int = N_LABELED
    silr_params: dict = field(default_factory=lambda: dict(BENCH_SILR))
    out: Path = Path("benchmarks")
    llm_scores_dir: Path | None = None
    backbone: dict = field(default_factory=dict)  # dataset -> backbone override
    tag: str = ""  # sub-folder of results/ (settings sweeps)
    use_llm_scores: bool = True  # LLM track: give silr the LLM's scores (else only its thresholded labels)
    # LLM track: its own caps (the stored Gemma scores cover a smaller sample) and backbones, one setting
    # each ("llm" = the labeling LLM's hidden state under the task's prompt, benchmarks/prompts/; None = the
    # task's encoder, as in the noise track)
    llm_max_corpus: int = 2000
    llm_max_test: int = 500
    llm_backbones: list = field(default_factory=lambda: ["llm", None])
    prompts_dir: Path | None = None


def sample_labeled(n_rows: int, n: int, seed: int) -> np.ndarray:
    """The labeled budget: ``n`` corpus rows drawn uniformly once per seed (sorted indices). No redraw: a redraw
    conditioned on the drawn rows' gold labels or pseudo-labels would read gold beyond the budget. A draw that
    misses a class is run as it is (the methods that cannot cope record an error)."""
    rng = np.random.default_rng([seed, 0])
    return np.sort(rng.choice(n_rows, size=min(n, n_rows), replace=False))


def load_llm_scores(name: str, scores_dir: Path) -> pd.DataFrame | None:
    path = Path(scores_dir) / f"{name}.csv.gz"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"split": str, "row": np.int64, "hash": str, "score": np.float64})


def _match_scores(frame: pd.DataFrame, scores: pd.DataFrame, split: str) -> np.ndarray:
    """Scores of ``frame``'s rows (NaN where missing or the text hash differs)."""
    sub = scores[scores["split"] == split].drop_duplicates("row").set_index("row")
    out = np.full(len(frame), np.nan)
    have = frame["row"].isin(sub.index).to_numpy()
    if have.any():
        m = sub.loc[frame["row"][have]]
        ok = m["hash"].to_numpy() == frame["hash"][have].to_numpy()
        vals = m["score"].to_numpy()
        out[np.flatnonzero(have)[ok]] = vals[ok]
    return out


def llm_pseudo_labels(corpus_scores: np.ndarray, test_scores: np.ndarray, lab: np.ndarray, y_lab: np.ndarray):
    """Threshold the LLM scores at the accuracy-maximising cut on the labeled rows; returns (s, s_test, thr)."""
    from silr.annotate.calibrate import choose_threshold

    cs = np.nan_to_num(corpus_scores, nan=np.nanmedian(corpus_scores))
    ts = np.nan_to_num(test_scores, nan=np.nanmedian(corpus_scores))
    thr, _ = choose_threshold("accuracy", cs, cs[lab], y_lab)
    return (cs > thr).astype(np.int8), (ts > thr).astype(np.int8), float(thr)


def _acc(pred, y) -> float | None:
    return None if pred is None else float(np.mean(np.asarray(pred) == np.asarray(y)))


def engine_version() -> dict:
    """The engine the run imported: the git commit of the ``silr`` package's source tree and whether that tree
    differs from the commit (``dirty``). A snapshot made with ``git archive`` carries the commit in an
    ``ENGINE_COMMIT`` file next to the package."""
    import subprocess

    import silr

    pkg = Path(silr.__file__).resolve().parent
    marker = pkg.parent / "ENGINE_COMMIT"
    if marker.is_file():
        return {"commit": marker.read_text().strip(), "dirty": False, "source": "git archive snapshot"}
    try:
        commit = subprocess.run(["git", "-C", str(pkg), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(pkg), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty), "source": "working tree"}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "source": "unknown"}


def run_one(task: Task, Xc, Xt, s, s_test, *, seed: int, cfg: RunConfig, setting: str, track: str,
            backbone: str, scores: tuple | None = None, previous: dict | None = None) -> dict:
    """One (data set, setting, seed): every method in ``cfg.methods`` on the same inputs.

    Real-LLM track (``scores = (corpus, test)``): the 50 labeled rows are drawn once; the LLM threshold is
    fitted on those 50 rows and the refinement uses the same 50 (no second draw). The evidence every method
    reads on the test split is the LLM's score; in the noise track it is the pseudo-label."""
    y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
    lab = sample_labeled(y.size, cfg.n_labeled, seed)
    extra: dict = {}
    if track == "llm":
        s, s_test, thr = llm_pseudo_labels(scores[0], scores[1], lab, y[lab])
        med = np.nanmedian(scores[0])
        ev, ev_test = (np.nan_to_num(np.asarray(a, dtype=np.float64), nan=med) for a in scores)
        extra = {"threshold": thr}
    else:
        ev, ev_test = np.asarray(s, dtype=np.float64), np.asarray(s_test, dtype=np.float64)
    s, s_test = np.asarray(s).astype(np.int8), np.asarray(s_test).astype(np.int8)
    rec = {
        "dataset": task.name, "group": group_of(task.name), "track": track, "setting": setting, "seed": seed,
        "backbone": backbone, "n_corpus": int(y.size), "n_test": int(yt.size), "n_labeled": int(lab.size),
        "labeled_rows_digest": hashlib.sha256(lab.astype(np.int64).tobytes()).hexdigest()[:16],
        "labeled_classes": int(np.unique(y[lab]).size), "labeled_pseudo_values": int(np.unique(s[lab]).size),
        "pseudo_accuracy": _acc(s, y), "pseudo_test_accuracy": _acc(s_test, yt),
        "pseudo_true_gap": float(y[s == 1].mean() - y[s == 0].mean()) if 0 < s.mean() < 1 else 0.0,
        "evidence": "llm_score" if track == "llm" else "pseudo_label",
        "silr_params": cfg.silr_params, "engine": engine_version(), "methods": {}, **extra,
    }
    if previous is not None:  # refresh only cfg.methods, keep the other methods' stored figures
        rec["methods"] = dict(previous["methods"])
        rec["seconds_previous"] = previous.get("seconds")
    inp = Inputs(Xc, Xt, s, s_test, lab, y, yt, ev, ev_test, track == "llm", seed, dict(cfg.silr_params))
    # the corpus rows outside the labeled budget: a method fitted on the labeled rows is right there by construction
    unl = np.ones(y.size, dtype=bool)
    unl[lab] = False
    for m in cfg.methods:
        r = run_method(m, inp)
        rec["methods"][m] = {
            "corpus_acc": _acc(r.corpus_pred, y),
            "unlabeled_acc": None if r.corpus_pred is None else _acc(np.asarray(r.corpus_pred)[unl], y[unl]),
            "test_acc": _acc(r.test_pred, yt), "rounds": r.rounds,
            "info": r.info, "error": r.error, "seconds": round(r.seconds, 3),
        }
    rec["methods"] = {k: rec["methods"][k] for k in METHODS if k in rec["methods"]}
    return rec


def llm_setting(backbone: str | None) -> str:
    """Name of an LLM-track setting: the annotator and the features (``@llm`` = the annotator's hidden state,
    ``@encoder`` = the task's encoder)."""
    return f"gemma-3-270m@{backbone or 'encoder'}"


def _results_dir(cfg: RunConfig, track: str) -> Path:
    d = Path(cfg.out) / "results" / (cfg.tag or "main") / track
    d.mkdir(parents=True, exist_ok=True)
    return d


def run_suite(cfg: RunConfig, *, log: Callable[[str], None] = print, skip_existing: bool = False,
              update: bool = False) -> list[dict]:
    """Run every (data set, track/setting, seed); returns the run records (also written as JSON files).

    ``skip_existing``: reuse stored runs. ``update``: rerun only ``cfg.methods`` on stored runs (same noise and
    labeled rows, which are deterministic) and merge them into the stored records."""
    records = []
    scores_dir = cfg.llm_scores_dir or Path(cfg.out) / "llm_scores"
    prompts_dir = cfg.prompts_dir or Path(cfg.out) / "prompts"
    for name in cfg.datasets:
        jobs: list[tuple[str, str]] = []
        if "noise" in cfg.tracks:
            jobs += [("noise", n) for n in cfg.noise]
        if "llm" in cfg.tracks:
            jobs += [("llm", llm_setting(b)) for b in cfg.llm_backbones]
        loaded: dict[tuple, tuple] = {}

        def track_data(track: str, setting: str):
            """(task, Xc, Xt, backbone) of a track, loaded once per (caps, backbone)."""
            if track == "llm":
                caps = (cfg.llm_max_corpus, cfg.llm_max_test)
                b = setting.partition("@")[2]
                bname = cfg.backbone.get(name) if b == "encoder" else b
            else:
                caps, bname = (cfg.max_corpus, cfg.max_test), cfg.backbone.get(name)
            key = (caps, bname)
            if key not in loaded:
                task = load_task(name, max_corpus=caps[0], max_test=caps[1])
                t0 = time.perf_counter()
                Xc, Xt, bb = task_features(task, bname, prompts_dir=prompts_dir)
                log(f"{name} ({track} track): {len(task.corpus)} corpus rows, {len(task.test)} test rows, "
                    f"backbone {bb} ({time.perf_counter() - t0:.1f}s features)")
                loaded[key] = (task, Xc, Xt, bb)
            return loaded[key]

        hard = hard_t = None
        for track, setting in jobs:
            if track == "llm" and load_llm_scores(name, scores_dir) is None:
                log(f"[skip] {name} llm track: no stored scores in {scores_dir}")
                continue
            try:
                task, Xc, Xt, bb = track_data(track, setting)
            except FileNotFoundError as e:
                log(f"[skip] {name}: {e}")
                break
            y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
            if track == "llm":
                stored = load_llm_scores(name, scores_dir)
                if stored is None:
                    log(f"[skip] {name} llm track: no stored scores in {scores_dir}")
                    continue
                cs, ts = _match_scores(task.corpus, stored, "corpus"), _match_scores(task.test, stored, "test")
                if np.isnan(cs).mean() > 0.02 or np.isnan(ts).mean() > 0.02:
                    log(f"[skip] {name} llm track: stored scores cover {1 - np.isnan(cs).mean():.0%} of the corpus, "
                        f"{1 - np.isnan(ts).mean():.0%} of the test rows (rerun benchmarks/llm_annotate.py)")
                    continue
            elif NoiseSpec.parse(setting).kind == "id" and hard is None:
                hard = text_hardness(task.corpus["text"], y, seed=0)
                hard_t = text_hardness(task.test["text"], yt, seed=0)
            for seed in cfg.seeds:
                path = _results_dir(cfg, track) / f"{name}__{setting}__seed{seed}.json"
                previous = None
                if update and path.is_file():
                    previous = json.loads(path.read_text())
                elif skip_existing and path.is_file():
                    records.append(json.loads(path.read_text()))
                    continue
                t1 = time.perf_counter()
                scores = None
                if track == "llm":
                    s = s_test = None  # cut from the scores inside run_one, on the seed's labeled rows
                    scores = (cs, ts)
                else:
                    spec = NoiseSpec.parse(setting)
                    s = make_noise(spec, y, seed=1000 + seed, hardness=hard)
                    s_test = make_noise(spec, yt, seed=2000 + seed, hardness=hard_t)
                rec = run_one(task, Xc, Xt, s, s_test, seed=seed, cfg=cfg, setting=setting, track=track,
                              backbone=bb, scores=scores, previous=previous)
                rec["seconds"] = round(time.perf_counter() - t1, 2)
                atomic_write_text(path, json.dumps(rec, indent=1, default=json_default))
                records.append(rec)
                m = rec["methods"]
                brief = ", ".join(f"{k} {v['test_acc']:.3f}" for k, v in m.items() if v.get("test_acc") is not None)
                log(f"  {name} {setting} seed {seed}: pseudo {rec['pseudo_accuracy']:.3f} | test: {brief} "
                    f"({rec['seconds']:.0f}s)")
    return records


def load_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).rglob("*.json"))]
