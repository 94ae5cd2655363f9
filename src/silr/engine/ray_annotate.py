"""``silr annotate --engine ray``: round 0 on a Ray Data actor pool.

The corpus (a file or a folder of CSV/TSV/JSONL/Parquet files) is cut into shards of rows; each actor holds one
annotator (the local scorer, e.g. Gemma on CPU, or clients of OpenAI-compatible servers: several ``--base-url``
values separated by commas are used round-robin by shard). Per shard, an actor scores each distinct text once,
commits every score to the shard's SQLite score cache as it is produced (the cache of :mod:`silr.annotate.cache`,
one file per shard so each has one writer), and writes ``part-NNNNN.parquet`` (row, llm_score, abstained,
truncated) atomically. The labeled sample is scored first, as its own shard; texts already in its cache or in
the global score cache (``$SILR_CACHE_DIR/annotations.sqlite``, the local engine's) cost nothing.

Resume: a finished shard's Parquet file is never redone; a shard cut short (a killed worker: Ray restarts the
actor and retries the shard; or a killed driver: rerun the command) takes its finished scores from its cache.
So every text of a shard is scored once; only a request in flight when its worker died is sent again (at most
the annotator's concurrency per killed worker). The same text in two shards is scored in each unless the
global cache already holds it.

Then the driver reads the scores (one float per row), fits the threshold on the labeled sample exactly as
:func:`silr.annotate.run.annotate_frame` does, and writes the output shard by shard.
"""

from __future__ import annotations


import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from silr.engine.shards import Shard, check_manifest, list_input_files, plan_shards, read_shard, run_pool, worker_pid_file
from silr.io import atomic_path

__all__ = ["annotate_on_ray", "shards_dir"]


def shards_dir(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".shards")


class _AnnotateWorker:
    """Pool actor: one annotator per server URL (or one local model), used for every shard it is given."""

    def __init__(self, model: str, annotator_kwargs: dict, base_urls: list, plan, text_col: str, folder: str,
                 global_cache: str | None, peer_cache: str | None = None):
        import torch

        torch.set_num_threads(1)
        self.model, self.kw, self.base_urls = model, annotator_kwargs, base_urls or [None]
        self.plan, self.text_col, self.folder = plan, text_col, Path(folder)
        self.read_caches = [c for c in (global_cache, peer_cache) if c]
        self._annotators: dict = {}
        worker_pid_file(self.folder, "annotate")

    def annotator(self, sid: int):
        url = self.base_urls[sid % len(self.base_urls)]
        if url not in self._annotators:
            from silr.annotate.factory import make_annotator

            self._annotators[url] = make_annotator(self.model, base_url=url, **self.kw)
        return self._annotators[url]

    def __call__(self, item: dict) -> dict:
        from silr.annotate.cache import ScoreCache
        from silr.annotate.run import group_by_prompt, score_and_commit, score_values, take_cached
        from silr.io import clean_texts

        shard = Shard.from_json(item["shard"])
        part = self.folder / f"{shard.name}.parquet"
        if part.exists():
            return {"id": shard.id, "rows": shard.stop - shard.start, "scored": 0, "cached": 0, "done_before": True}
        if item.get("texts") is not None:
            texts = list(item["texts"])
        else:
            df = read_shard(shard, self.text_col)
            texts = clean_texts(df[self.text_col], what=f"input file '{shard.file}' rows {shard.start}-{shard.stop}",
                                column=self.text_col)
        ann = self.annotator(shard.id)
        results, n_scored, n_cached = {}, 0, 0
        store = ScoreCache(self.folder / f"{shard.name}.scores.sqlite")
        others = [ScoreCache(c) for c in self.read_caches if Path(c).exists()]  # read only: earlier scores
        try:
            for p, ts in group_by_prompt(self.plan, texts).values():
                phash = p.with_hash(ann.settings_id)
                missing = take_cached([store, *others], ann.model_id, phash, ts, results)
                n_cached += len(ts) - len(missing)
                if missing:  # each score committed at once: a retried shard skips it
                    n_scored += score_and_commit(ann, p, phash, missing, store, results)
        finally:
            store.close()
            for other in others:
                other.close()
        score = score_values(results, texts)
        table = pd.DataFrame({"row": np.arange(shard.start, shard.stop, dtype=np.int64), "llm_score": score,
                              "abstained": np.isnan(score),
                              "truncated": np.array([results[t].truncated for t in texts], dtype=bool)})
        with atomic_path(part) as tmp:
            table.to_parquet(tmp, index=False)
        return {"id": shard.id, "rows": len(texts), "scored": n_scored, "cached": n_cached, "done_before": False,
                "model": ann.describe() if hasattr(ann, "describe") else {"model_id": ann.model_id},
                "truncated": int(table["truncated"].sum())}


def annotate_on_ray(engine, input: str | os.PathLike, out: str | os.PathLike, *, text_col: str, model: str, spec,
                    labeled: pd.DataFrame | None, shots: int, threshold, seed: int, label_col: str,
                    annotator_kwargs: dict, base_url: str | None, cache: str | os.PathLike | None,
                    progress: bool = True, drop_columns: list[str] | None = None) -> dict[str, Any]:
    """Annotate ``input`` on the Ray engine and write ``out`` (the local engine's columns); returns the record."""
    from silr.annotate.calibrate import choose_threshold
    from silr.annotate.run import shot_plan

    t_start = time.time()
    files = list_input_files(input)
    shards = plan_shards(files, text_col, engine.rows_per_shard)
    plan, lab_texts, lab_y = shot_plan(spec, labeled, text_col, shots=shots, seed=seed, label_col=label_col)
    folder = shards_dir(out)
    urls = [u.strip() for u in (base_url or "").split(",") if u.strip()]
    job = {"files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files], "text_col": text_col,
           "model": model, "prompt": plan.main.hash, "shots": shots, "seed": seed,
           "labeled": len(lab_texts), "rows_per_shard": engine.rows_per_shard, "base_urls": urls}
    check_manifest(folder, job)
    lab_shard = Shard(len(shards), "<labeled sample>", 0, len(lab_texts))
    init = {"model": model, "annotator_kwargs": annotator_kwargs, "base_urls": urls, "plan": plan,
            "text_col": text_col, "folder": str(folder), "global_cache": str(cache) if cache else None,
            "peer_cache": str(folder / f"{lab_shard.name}.scores.sqlite") if lab_texts else None}
    results = []
    if lab_texts and not (folder / f"{lab_shard.name}.parquet").exists():
        # the labeled sample first: corpus shards then reuse its scores (a labeled text is often a corpus row)
        results += run_pool(engine, [{"shard": lab_shard.to_json(), "texts": lab_texts}], _AnnotateWorker,
                            init_kwargs={**init, "peer_cache": None}, workers=1)
    items = [{"shard": s.to_json()} for s in shards if not (folder / f"{s.name}.parquet").exists()]
    results += run_pool(engine, items, _AnnotateWorker, init_kwargs=init)
    # every shard is done now: read the scores (one float per row) and fit the threshold as the local engine does
    parts = [pd.read_parquet(folder / f"{s.name}.parquet", columns=["llm_score", "truncated"]) for s in shards]
    corpus_scores = np.concatenate([p["llm_score"].to_numpy() for p in parts]) if parts else np.zeros(0)
    lab_scores = None
    if lab_texts:
        lab_scores = pd.read_parquet(folder / f"{lab_shard.name}.parquet", columns=["llm_score"])["llm_score"].to_numpy()
    thr, thr_rec = choose_threshold(threshold, corpus_scores, lab_scores, lab_y if lab_texts else None)
    n_pos = int(np.sum(~np.isnan(corpus_scores) & (corpus_scores > thr)))
    n_abst = int(np.isnan(corpus_scores).sum())
    _write_output(shards, folder, text_col, thr, Path(out), drop_columns or [])
    done_now = [r for r in results if not r.get("done_before")]
    describe = next((r["model"] for r in done_now if "model" in r), {"model_id": model})
    return {
        "model": describe,
        "prompt": {**spec.to_dict(), "hash": plan.main.hash, "shots_requested": shots, "seed": seed,
                   "shots": [{"row": str(s.row), "label": s.label} for s in plan.main.shots],
                   "prefix": plan.main.prefix},
        "threshold": thr_rec,
        "counts": {"rows_in": int(corpus_scores.size), "rows": int(corpus_scores.size), "labeled": len(lab_texts),
                   "scored": sum(r.get("scored", 0) for r in done_now), "cached": sum(r.get("cached", 0) for r in done_now),
                   "abstained": n_abst, "truncated": int(sum(p["truncated"].sum() for p in parts)),
                   "positive": n_pos, "negative": int(corpus_scores.size - n_pos - n_abst)},
        "engine": {**engine.describe(), "shards": len(shards), "shards_dir": str(folder),
                   "shards_done_before": len(shards) + bool(lab_texts) - len(done_now)},
        "seconds": round(time.time() - t_start, 3),
    }


def _write_output(shards, folder: Path, text_col: str, thr: float, out: Path, drop: list[str]) -> None:
    """The input's columns plus llm_score, pseudo_label, abstained, shard after shard (Parquet and CSV stream)."""
    from silr.io import write_table

    def frames():
        for s in shards:
            df = read_shard(s, text_col).reset_index(drop=True)
            df = df.drop(columns=[c for c in drop if c in df.columns])
            sc = pd.read_parquet(folder / f"{s.name}.parquet")
            df["llm_score"] = sc["llm_score"].to_numpy()
            abst = sc["abstained"].to_numpy()
            lab = pd.array(np.where(abst, 0, df["llm_score"].to_numpy() > thr).astype(int), dtype="Int8")
            df["pseudo_label"] = lab
            df.loc[abst, "pseudo_label"] = pd.NA
            df["abstained"] = abst
            yield df

    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(out) as tmp:
            writer = None
            for df in frames():
                t = pa.Table.from_pandas(df, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t.cast(writer.schema))
            if writer is not None:
                writer.close()
    elif suffix == ".csv":
        with atomic_path(out) as tmp:
            for i, df in enumerate(frames()):
                df.to_csv(tmp, mode="w" if i == 0 else "a", header=i == 0, index=False)
    else:  # other formats are written at once
        write_table(pd.concat(list(frames()), ignore_index=True), out)


