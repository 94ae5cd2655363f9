"""Run the benchmark: tasks x pseudo-label settings x seeds x methods, one JSON file per run."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from silr.bench.data import Task, load_task, task_features
from silr.bench.methods import METHODS, run_method
from silr.bench.noise import NoiseSpec, make_noise, text_hardness

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


def sample_labeled(y: np.ndarray, s: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """``n`` random corpus rows for the labeled budget; redrawn (next sub-seed) until both gold classes and, when
    given, both pseudo-label values occur (the priors need them). Sorted indices."""
    for k in range(100):
        rng = np.random.default_rng([seed, k])
        idx = np.sort(rng.choice(y.size, size=min(n, y.size), replace=False))
        if np.unique(y[idx]).size == 2 and (s is None or np.unique(s[idx]).size == 2):
            return idx
    return idx


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


def run_one(task: Task, Xc, Xt, s, s_test, *, seed: int, cfg: RunConfig, setting: str, track: str,
            backbone: str, extra: dict | None = None, previous: dict | None = None) -> dict:
    y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
    # LLM track: the threshold is fitted on a plain draw of 50 rows (the pseudo-labels do not exist yet); the
    # draw is redone (next sub-seed) only if those rows then miss a pseudo-label value
    lab = sample_labeled(y, None if track == "llm" else s, cfg.n_labeled, seed)
    llm_scores = None
    if track == "llm" and extra is not None and "scores" in extra:
        s, s_test, thr = llm_pseudo_labels(extra["scores"][0], extra["scores"][1], lab, y[lab])
        med = np.nanmedian(extra["scores"][0])
        llm_scores = tuple(np.nan_to_num(np.asarray(a, dtype=np.float64), nan=med) for a in extra["scores"])
        extra = {"threshold": thr}
        lab = sample_labeled(y, s, cfg.n_labeled, seed)
        if not np.array_equal(lab, sample_labeled(y, None, cfg.n_labeled, seed)):
            extra["labeled_redrawn"] = True
    rec = {
        "dataset": task.name, "track": track, "setting": setting, "seed": seed, "backbone": backbone,
        "n_corpus": int(y.size), "n_test": int(yt.size), "n_labeled": int(lab.size),
        "pseudo_accuracy": _acc(s, y), "pseudo_test_accuracy": _acc(s_test, yt),
        "pseudo_true_gap": float(y[s == 1].mean() - y[s == 0].mean()) if 0 < s.mean() < 1 else 0.0,
        "silr_params": cfg.silr_params, "methods": {}, **(extra or {}),
    }
    combined = None
    if previous is not None:  # refresh only cfg.methods, keep the other methods' stored figures
        rec["methods"] = dict(previous["methods"])
        rec["seconds_previous"] = previous.get("seconds")
    for m in cfg.methods:
        if m == "silr_combined":
            continue  # filled from the silr run
        r = run_method(m, Xc, Xt, s, s_test, lab, y, yt, seed=seed, silr_params=cfg.silr_params,
                       llm_scores=llm_scores if cfg.use_llm_scores else None)
        test_pred = r.test_pred if r.test_pred is not None else (s_test if m.startswith(("silr", "uu", "pn")) else None)
        rec["methods"][m] = {
            "corpus_acc": _acc(r.corpus_pred, y), "test_acc": _acc(test_pred, yt), "rounds": r.rounds,
            "info": {k: v for k, v in r.info.items() if k != "combined"}, "error": r.error,
            "seconds": round(r.seconds, 3),
        }
        if m == "silr":
            combined = r.info.get("combined")
    if "silr_combined" in cfg.methods and "silr" in rec["methods"]:
        base = rec["methods"]["silr"]
        if combined is not None:
            rec["methods"]["silr_combined"] = {
                "corpus_acc": _acc(combined["corpus_pred"], y), "test_acc": _acc(combined.get("test_pred"), yt),
                "rounds": [], "info": {}, "error": None, "seconds": 0.0}
        else:  # silr handed back the pseudo-labels: so does the combination
            rec["methods"]["silr_combined"] = {**base, "rounds": []}
    order = [k for k in METHODS if k in rec["methods"]]
    rec["methods"] = {k: rec["methods"][k] for k in order}
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
            extra = None
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
                scores = load_llm_scores(name, scores_dir)
                if scores is None:
                    log(f"[skip] {name} llm track: no stored scores in {scores_dir}")
                    continue
                cs, ts = _match_scores(task.corpus, scores, "corpus"), _match_scores(task.test, scores, "test")
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
                if track == "llm":
                    s = s_test = None
                    extra = {"scores": (cs, ts)}
                    s = np.zeros(y.size, dtype=np.int8)  # replaced inside run_one
                else:
                    spec = NoiseSpec.parse(setting)
                    s = make_noise(spec, y, seed=1000 + seed, hardness=hard)
                    s_test = make_noise(spec, yt, seed=2000 + seed, hardness=hard_t)
                    extra = None
                rec = run_one(task, Xc, Xt, s, s_test, seed=seed, cfg=cfg, setting=setting, track=track,
                              backbone=bb, extra=extra, previous=previous)
                rec["seconds"] = round(time.perf_counter() - t1, 2)
                path.write_text(json.dumps(rec, indent=1, default=_json_default))
                records.append(rec)
                m = rec["methods"]
                brief = ", ".join(f"{k} {v['test_acc']:.3f}" for k, v in m.items() if v.get("test_acc") is not None)
                log(f"  {name} {setting} seed {seed}: pseudo {rec['pseudo_accuracy']:.3f} | test: {brief} "
                    f"({rec['seconds']:.0f}s)")
    return records


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).rglob("*.json"))]
