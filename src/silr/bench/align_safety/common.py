"""Shared pieces of the safety-alignment benchmark: folders, summaries, row split, reward models on MiniLM."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from silr.env import use_local_models
from silr.io.atomic import atomic_write_text

use_local_models()

#: The benchmarks folder (prompts, results/align); the thin caller benchmarks/align_safety.py sets it.
HERE = Path(os.environ.get("SILR_BENCH_DIR", "benchmarks")).resolve()
WORK = HERE / "results" / "align"
DATA = "pku_saferlhf_safety"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _summary() -> dict:
    """All stages' results (each stage writes its own summary_<key>.json, so stages may run in parallel)."""
    out = {}
    for p in sorted(WORK.glob("summary_*.json")):
        out.update(json.loads(p.read_text()))
    return out



def _save_summary(upd: dict) -> None:
    for k, v in upd.items():
        atomic_write_text(WORK / f"summary_{k}.json", json.dumps({k: v}, indent=2))


def split_rows(n_corpus: int, n_labeled: int, seed: int = 0):
    """Corpus = the first ``n_corpus`` rows of a fixed permutation of train; gold = its first ``n_labeled``."""
    import numpy as np

    from silr.corpora import load_shared

    train = load_shared(DATA, "train")
    perm = np.random.default_rng(seed).permutation(len(train))
    corpus = train.iloc[perm[:n_corpus]].reset_index(drop=True)
    labeled = corpus.iloc[:n_labeled].reset_index(drop=True)
    return train, corpus, labeled


def _minilm():
    from silr.backbones import get_backbone

    return get_backbone("minilm", progress=False)


class _LR:
    """A logistic regression head (decision_function / predict_proba) saved as JSON."""

    def __init__(self, coef, intercept):
        import numpy as np

        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def decision_function(self, X):
        import numpy as np

        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def predict_proba(self, X):
        import numpy as np

        p = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])


def _fit_lr(X, y, balanced: bool, C: float = 1.0) -> _LR:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=3000, class_weight="balanced" if balanced else None).fit(X, y)
    return _LR(lr.coef_[0], lr.intercept_[0])


def load_rewards():
    """{'silr', 'vanilla', 'judge'} -> RewardModel (reward = higher for 'safe', the data's label 1)."""
    from silr.reward import RewardModel

    bb = _minilm()
    out = {"silr": RewardModel.from_run(WORK / "reward_silr")}
    for k in ("vanilla", "judge"):
        d = json.loads((WORK / f"reward_{k}.json").read_text())
        out[k] = RewardModel(bb, _LR(d["coef"], d["intercept"]), source=f"reward_{k}.json")
    return out



def _boot_ci(x, n_boot: int = 2000, seed: int = 0):
    import numpy as np

    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return [float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))]
