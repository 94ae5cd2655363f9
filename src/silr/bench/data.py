"""Benchmark tasks: corpus (train split, gold hidden), test split, backbone, and cached features.

Every task is defined once here so the LLM-scoring script, the suite and the tests agree on which rows
form the corpus: a stratified sample of the train split of at most ``max_corpus`` rows, drawn with a fixed
seed (:data:`CORPUS_SEED`), and a stratified test sample of at most ``max_test`` rows. Rows keep their
position in the source file (``row``) so stored LLM scores can be matched back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["TaskSpec", "Task", "TASKS", "DEFAULT_DATASETS", "load_task", "text_hash", "task_features"]

CORPUS_SEED = 20250
TEST_SEED = 20251
SHOT_SEED = 20252


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source: str  # "embedded" | "shared"
    backbone: str  # "minilm" | "e5" | "ngram"
    kind: str  # short description for the table
    prompt: str  # prompt file stem under benchmarks/prompts


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("rotten_tomatoes", "embedded", "minilm", "review polarity (EN)", "rotten_tomatoes"),
        TaskSpec("sms_spam", "embedded", "minilm", "SMS spam (EN)", "sms_spam"),
        TaskSpec("selerosa", "shared", "e5", "satire (RO)", "selerosa"),
        TaskSpec("pku_saferlhf_safety", "shared", "minilm", "response safety (EN)", "pku_saferlhf_safety"),
        TaskSpec("patent_claims_cpc", "shared", "minilm", "patent claim section H (EN)", "patent_claims_cpc"),
        TaskSpec("moleculenet_bace", "shared", "ngram", "BACE inhibitor (SMILES)", "moleculenet_bace"),
        TaskSpec("peptide_amp_modlamp", "shared", "ngram", "antimicrobial peptide (AA seq)", "peptide_amp_modlamp"),
        TaskSpec("sst2", "shared", "minilm", "sentence polarity (EN)", "sst2"),
        TaskSpec("mr", "shared", "minilm", "movie review polarity (EN)", "mr"),
        TaskSpec("subj", "shared", "minilm", "subjectivity (EN)", "subj"),
    )
}

DEFAULT_DATASETS = tuple(TASKS)


def text_hash(text: str) -> str:
    """Short content hash used to key stored LLM scores (16 hex digits of sha256)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class Task:
    spec: TaskSpec
    corpus: pd.DataFrame  # columns row, text, label (gold: benchmark only), hash
    test: pd.DataFrame
    shots: pd.DataFrame  # pool of few-shot examples for the LLM prompt (row, text, label)
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def _stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified sample of ``n`` rows (all rows when ``n >= len``).

    Samples are nested: for a fixed seed, the sample of ``m < n`` rows is (up to rounding of the per-class
    counts) a subset of the sample of ``n`` rows, because each class is read off one fixed permutation.
    """
    N = labels.size
    if n >= N:
        return np.arange(N)
    rng = np.random.default_rng(seed)
    out = []
    classes = np.unique(labels)
    counts = {c: int(np.sum(labels == c)) for c in classes}
    alloc = {c: int(round(n * counts[c] / N)) for c in classes}
    alloc[classes[-1]] += n - sum(alloc.values())
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(rng.permutation(idx)[: min(alloc[c], idx.size)])
    return np.sort(np.concatenate(out))


def _load_raw(spec: TaskSpec, split: str) -> pd.DataFrame:
    if spec.source == "embedded":
        from silr.corpora import load_embedded

        return load_embedded(spec.name, split=split)
    from silr.corpora import load_shared

    return load_shared(spec.name, split)


def load_task(name: str, *, max_corpus: int = 3000, max_test: int = 1000, n_shot_pool: int = 8) -> Task:
    """Load a benchmark task. Raises FileNotFoundError for a shared task when ../shared is absent."""
    if name not in TASKS:
        raise ValueError(f"unknown benchmark data set {name!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[name]
    train = _load_raw(spec, "train")
    test = _load_raw(spec, "test")
    y = train["label"].to_numpy()
    corpus_idx = _stratified_sample(y, max_corpus, CORPUS_SEED)
    # few-shot pool: from train rows outside the default-size corpus (so it does not depend on max_corpus)
    # when there are enough, else from the whole train split
    rest = np.setdiff1d(np.arange(len(train)), _stratified_sample(y, max(3000, max_corpus), CORPUS_SEED))
    pool_from = rest if rest.size >= 2 * n_shot_pool else np.arange(len(train))
    rng = np.random.default_rng(SHOT_SEED)
    pool = []
    for c in (0, 1):
        cand = pool_from[y[pool_from] == c]
        pool.append(rng.choice(cand, size=min(n_shot_pool // 2, cand.size), replace=False))
    pool_idx = np.sort(np.concatenate(pool))
    test_idx = _stratified_sample(test["label"].to_numpy(), max_test, TEST_SEED)

    def frame(df: pd.DataFrame, idx: np.ndarray) -> pd.DataFrame:
        out = df.iloc[idx].reset_index(drop=True).copy()
        out.insert(0, "row", idx.astype(np.int64))
        out["label"] = out["label"].astype(np.int64)
        out["hash"] = [text_hash(t) for t in out["text"]]
        return out

    task = Task(spec, frame(train, corpus_idx), frame(test, test_idx), frame(train, pool_idx))
    task.info = {
        "train_rows": int(len(train)),
        "test_rows": int(len(test)),
        "corpus": int(len(corpus_idx)),
        "test": int(len(test_idx)),
        "corpus_pos_rate": float(task.corpus["label"].mean()),
    }
    return task


def llm_encoder(task: Task, prompts_dir: str | Path, *, scorer=None, cache_dir: str | Path | None = None,
                shots: int = 4, progress: bool = False, layer: int | None = None):
    """The ``llm`` backbone of a task: Gemma-3-270M's hidden state under the task's few-shot prompt
    (``prompts_dir/<task>.toml``, ``shots`` examples from the task's shot pool; 0 = the zero-shot prompt), built
    exactly as ``annotate_frame`` builds the prompt (same plan, same leave-itself-out for texts that are shots)."""
    from silr.annotate.prompts import load_prompt
    from silr.backbones.prompted import llm_backbone

    spec = load_prompt(Path(prompts_dir) / f"{task.name}.toml")
    # the labeled frame llm_annotate.py gives annotate_frame: the shot pool indexed by train row
    return llm_backbone(spec, task.shots.set_index("row")[["text", "label"]], "text", shots=shots, seed=0,
                        scorer=scorer, progress=progress, cache_dir=cache_dir, layer=layer)


def task_features(task: Task, backbone: str | None = None, *, cache_dir: str | Path | None = None,
                  prompts_dir: str | Path | None = None):
    """Features of the corpus and test rows with the task's backbone: (X_corpus, X_test, backbone_name).

    Dense encoders (minilm, e5) are cached on disk by content; ``ngram`` is fitted on the corpus texts
    only (no test text, no labels) and returns sparse matrices.
    """
    from silr.backbones import get_backbone

    name = backbone or task.spec.backbone
    if name == "llm":
        if prompts_dir is None:
            raise ValueError("backbone 'llm' needs the folder of the tasks' prompt files (prompts_dir)")
        bb = llm_encoder(task, prompts_dir, cache_dir=cache_dir)
    else:
        bb = get_backbone(name, cache_dir=cache_dir, progress=False)
    bb.fit(task.corpus["text"].tolist())
    Xc = bb.transform(task.corpus["text"].tolist())
    Xt = bb.transform(task.test["text"].tolist())
    return Xc, Xt, name
