"""Writes benchmarks/SCALE.md from the stored runs in benchmarks/results/scale/ (made by scale_bench.py).

    python benchmarks/scale_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RES = HERE / "results" / "scale"

# published throughput used by the projection (see the text): Llama 3.1 8B BF16 on one H100 80GB under vLLM
VLLM_TOK_S_H100 = 12_500
VLLM_SOURCE = "https://www.morphllm.com/vllm-benchmarks (table 'Throughput Benchmarks': Llama 3.1 8B BF16, 1x H100 80GB, ~12,500 tok/s)"
GPU_HOUR_USD = 2.50  # an assumption (on-demand H100 prices vary by provider); plug in your own


def load() -> dict[str, dict]:
    return {f.stem: json.loads(f.read_text()) for f in sorted(RES.glob("*.json"))}


def agreement(n: int, w: int = 2) -> dict | None:
    a, b = RES / f"labels-local-n{n}-w2.npy", RES / f"labels-ray-n{n}-w{w}.npy"
    if not (a.exists() and b.exists()):
        return None
    A, B = np.load(a), np.load(b)
    if A.shape != B.shape:
        return {"shape": (A.shape, B.shape)}
    cols = [f"round_{r}" for r in range(A.shape[0] - 1)] + ["final"]
    out = {c: float((A[i] == B[i]).mean()) for i, c in enumerate(cols)}
    out["differ"] = int((A != B).sum())
    return out


def fmt(v, d=2):
    return "-" if v is None else f"{v:.{d}f}"


def main() -> None:
    runs = load()
    refine = sorted((r for k, r in runs.items() if k.startswith("refine-")),
                    key=lambda r: (r["n"], r["engine"], r.get("workers") or 0, "note" not in r))
    ann = sorted((r for k, r in runs.items() if k.startswith("annotate-")), key=lambda r: r["workers"])
    L = []
    L.append("# Scale: the Ray engine against the local engine\n")
    L.append("Made by `benchmarks/scale_report.py` from the stored runs in `benchmarks/results/scale/` "
             "(`nice -n 10 python benchmarks/scale_bench.py all`, resumable: one JSON per run). Every figure below "
             "is one run, seed 0; the machine line of each run is in its JSON.\n")
    ray1m = [r for r in refine if r["engine"] == "ray" and r["n"] == 1_000_000 and not r.get("note")]
    loc1m = [r for r in refine if r["engine"] == "local" and r["n"] == 1_000_000]
    ag20 = agreement(20264)
    L.append("## Summary\n")
    if ray1m and loc1m:
        L.append(f"* 1,000,000 rows end to end (cached MiniLM features, 5 rounds): peak resident memory "
                 f"**{ray1m[-1]['peak_rss_tree_gib']:.2f} GiB** on the Ray engine (driver + local cluster, summed; "
                 f"target <= 4 GiB) against **{loc1m[-1]['peak_rss_tree_gib']:.2f} GiB** on the local engine; wall "
                 f"time {ray1m[-1]['wall_s']:.0f} s against {loc1m[-1]['wall_s']:.0f} s (the Ray engine is slower on one "
                 "box, see below).")
    if ag20 and "shape" not in ag20:
        L.append(f"* Same answer: on the 20,264-row real corpus the Ray engine's labels agree with the local "
                 f"engine's on {ag20['final'] * 100:.2f}% of rows (final labels; {ag20['differ']} labels differ over "
                 "all rounds); also 100% at 10k, 100k and 1M rows.")
    L.append("* 1 vs 2 Ray workers on these 2 shared cores: no gain (table below).")
    L.append("")
    L.append("## Data, honestly\n")
    L.append("There is no million-row labeled corpus offline. The real corpus is **SST-2 + MR** (every split of "
             "`/work/shared/data/sst2` and `/work/shared/data/mr`, English movie-review sentences with gold sentiment): "
             "20,264 rows, 16,040 distinct texts (the two sources share about 4k sentences; both copies are kept). "
             "Pseudo-labels come from a stated noise model, not an LLM: a gold positive is flipped to negative with "
             "probability 0.25, a gold negative to positive with 0.15 (numpy seed 0), so round 0 is 80.4% accurate; "
             "the `llm_score` is a noisy logit with the pseudo-label's sign (gamma(2,1) magnitude). "
             "The 10k, 100k and 1M corpora resample these 20,264 rows **with replacement** (numpy seed 1); a resampled "
             "row keeps its text, gold and pseudo-label, so a 1M corpus holds the same 16,040 texts about 62 times "
             "each. 50 rows of each corpus get their gold label (seed 2). Features: all-MiniLM-L6-v2 (384-d), "
             "encoded once for the 16,040 texts and read from the feature cache by text. 5 rounds, the default "
             "refiner (linear head, 20 epochs, robust UU then UU, stack hand-back). `benchmarks/scale_corpus.py` "
             "builds the corpus.\n")
    L.append("Runs overlapped: the 100k-row and annotation runs ran while the second 1M-row Ray run was going, "
             "and every run shared the cores with other people's jobs; wall times are comparable only roughly.\n")
    L.append("Machine: 2 CPU cores shared with three other jobs (load average 9-18 during these runs, in each "
             "JSON), 24 GiB, no GPU; Ray 2.60.0 local cluster `ray.init(num_cpus=2)`, torch 2.13.0 (1 thread per "
             "process). Wall times on this box are inflated by the other jobs and noisy; memory is not.\n")
    L.append("Memory: a sampler thread reads every 0.5 s the RSS of the driver and of all its descendant "
             "processes (the Ray GCS, raylet and workers the local cluster runs) and keeps the peak of the sum "
             "(`peak tree`) and of the driver alone. File-backed pages of the memory-mapped feature store are "
             "counted in every process that maps them, so `peak tree` over-counts.\n")
    L.append("## End to end refinement (features from the cache, 5 rounds)\n")
    L.append("| rows | engine | workers | wall s | us per row | peak tree GiB | peak driver GiB | rounds | round-0 acc. | final acc. | final labels | commit |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in refine:
        L.append(f"| {r['n']:,} | {r['engine']} | {r.get('workers') or '-'} | {r['wall_s']:.0f} | {r['per_row_us']:.0f} | "
                 f"{r['peak_rss_tree_gib']:.2f} | {r['peak_rss_driver_gib']:.2f} | {r['rounds_run']} | "
                 f"{r['accuracy_round0']:.4f} | {r['accuracy_final']:.4f} | {r['final_source']} | {r['machine']['commit']} |")
    L.append("")
    if any(r.get("start_gap_lower", "auto") is None for r in refine):
        L.append("The 100,000-row corpus's 50 labeled rows do not pass the refiner's round-0 interval check "
                 "(`start_gap_lower`, on by default when LLM scores are given: the refinement does not start and "
                 "the labeled-row probe is handed back; seen in the first 100k Ray runs, and the gate reads only labels and "
                 "LLM scores, which are the same on both engines); its runs set `start_gap_lower=None` so "
                 "that 5 rounds run and can be timed. Every other run uses the defaults.\n")
    for r in refine:
        if r.get("note"):
            L.append(f"Note on the {r['n']:,}-row {r['engine']} run of commit {r['machine']['commit']}: {r['note']}.\n")
    L.append("Accuracies are against the gold labels of every corpus row, read after the run (the runs read only "
             "the 50 labeled rows' gold). The accuracy columns of the two engines are copies of each other where "
             "their labels agree (next table); they are shown to make that visible, not as a comparison.\n")
    L.append("## Same answer\n")
    L.append("| rows | " + " | ".join(["round_0", "round_1", "round_2", "round_3", "round_4", "round_5", "final"])
             + " | labels that differ (all rounds) |")
    L.append("|---:|" + "---:|" * 8)
    for n in sorted({r["n"] for r in refine}):
        ag = agreement(n)
        if ag and "shape" not in ag:
            L.append(f"| {n:,} | " + " | ".join(f"{ag.get(c, float('nan')):.4f}" for c in
                                               ["round_0", "round_1", "round_2", "round_3", "round_4", "round_5", "final"])
                     + f" | {ag['differ']} |")
        elif ag:
            L.append(f"| {n:,} | label arrays of different shapes {ag['shape']} (a different number of rounds ran) |")
    L.append("")
    L.append("Share of corpus rows whose label is the same under both engines (same seed). The streaming head draws "
             "the in-memory head's permutation and batch order; the two differ only in float rounding of the "
             "features' mean and scale (a float64 streaming pass against a float32 reduction), so labels "
             "can differ only for rows whose score is within rounding of the threshold; none did in these runs.\n")
    L.append("## 1 vs 2 Ray workers\n")
    w = {r["workers"]: r for r in refine if r["engine"] == "ray" and r["n"] == 100_000}
    if w:
        L.append("| what | 1 worker | 2 workers | ratio |")
        L.append("|---|---:|---:|---:|")
        if 1 in w and 2 in w:
            L.append(f"| refine 100,000 rows, wall s | {w[1]['wall_s']:.0f} | {w[2]['wall_s']:.0f} | {w[1]['wall_s'] / w[2]['wall_s']:.2f}x |")
        a = {r["workers"]: r for r in ann}
        if 1 in a and 2 in a:
            L.append(f"| annotate with Gemma-3-270M on CPU, texts/s ({a[1]['n']} texts + 8 labeled) | {a[1]['texts_per_s']:.2f} | "
                     f"{a[2]['texts_per_s']:.2f} | {a[2]['texts_per_s'] / a[1]['texts_per_s']:.2f}x |")
        L.append("")
        L.append("On this box a second worker does not help: the two cores are shared with three other jobs "
                 "(load average 10-14 during these runs, in each JSON), so a second actor competes for the same "
                 "cores, and for annotation loads a second copy of Gemma (peak tree "
                 + (f"{a[2]['peak_rss_tree_gib']:.1f} vs {a[1]['peak_rss_tree_gib']:.1f} GiB" if 1 in a and 2 in a else "-")
                 + "). The shards are independent (no communication between workers), which is what lets the "
                 "work divide over idle cores or nodes; that division is not measured here. The refinement's "
                 "head training runs in one actor whatever the number of workers; only feature extraction and "
                 "corpus scoring use the pool.\n")
        L.append("Why the Ray engine is slower than the local one at 1M rows (likely causes, not timed separately): the streaming "
                 "head gathers each mini-batch from the memory-mapped store and drops the pages again (so its memory "
                 "stays bounded), which costs more than slicing an in-memory tensor, and every step (features, each "
                 "round's training, each round's scoring) starts a Ray Data actor pool (~5-15 s each here). On one "
                 "machine that fits the corpus in memory the local engine is the faster choice; the Ray engine is for "
                 "corpora that do not fit, and for spreading annotation over many machines.\n")
    L.extend(_finetune_section())
    L.append("## Per-row cost from 10k to 1M rows\n")
    L.append("Wall time per row of the whole refinement (features from the cache, 5 rounds). It is not flat: each "
             "run pays fixed costs (loading MiniLM and the cache, and on Ray the cluster's start and one actor pool "
             "per step, ~5-15 s each here), which dominate small runs; the per-row cost falls towards the streaming "
             "cost as N grows.\n")
    for eng in ("ray", "local"):
        rs = [r for r in refine if r["engine"] == eng and (r.get("workers") in (2, None))]
        if len(rs) >= 2:
            L.append(f"* {eng}: " + ", ".join(f"{r['n']:,} rows {r['per_row_us']:.0f} us/row" for r in rs))
    L.append("")
    open(HERE / "SCALE.md", "w").write("\n".join(L) + "\n" + PROJECTION.format(**_proj(refine)))


def _finetune_section() -> list[str]:
    """``--engine ray --finetune``: seconds per round from benchmarks/results/scale_finetune/ (scale_finetune_ray.py)."""
    runs = [json.loads(f.read_text()) for f in sorted((HERE / "results" / "scale_finetune").glob("*.json"))]
    if not runs:
        return []
    L = ["## Fine-tuning under Ray Train (`--engine ray --finetune`)\n",
         "One round's fit of the fine-tuning learner (all-MiniLM-L6-v2 end to end, the learner's defaults: 2 epochs, "
         "batch 32, max_length 64, lr 3e-5) on the same rows, same seed, same fixed UU weights: the local learner, and "
         "`RayTrainFineTuneLearner` under `ray.train.torch.TorchTrainer` (gloo, CPU workers, DDP with 2) on a local "
         "cluster `ray.init(num_cpus=2)`. `nice -n 10 python benchmarks/scale_finetune_ray.py 300` (one JSON per "
         "configuration in `benchmarks/results/scale_finetune/`). Rows: Rotten Tomatoes snippets from the embedded "
         "demo corpus (sampled, seed 0), pseudo-labels from a stated noise model (positive flipped w.p. 0.3, negative "
         "w.p. 0.1), every 5th row held out for the epoch choice. Accuracy is against gold, read after the fit.\n",
         "| engine | workers | rows | s per round | best epoch | accuracy vs gold | same labels as local | load before/after | commit |",
         "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    base = next((r for r in runs if r["engine"] == "local"), None)
    for r in sorted(runs, key=lambda r: (r["engine"] != "local", r.get("workers") or 0)):
        same = "-" if base is None or r is base else \
            f"{np.mean(np.asarray(r['labels_pos']) == np.asarray(base['labels_pos'])):.2%}"
        L.append(f"| {r['engine']} | {r.get('workers') or '-'} | {r['n']} | {r['fit_seconds']:.0f} | {r['best_epoch']} | "
                 f"{r['acc_vs_gold']:.3f} | {same} | {r['load_before']:.1f} / {r['load_after']:.1f} | {r['commit']} |")
    L.append("")
    L.append("With one worker the steps are the local learner's in the same order (no DDP), so the labels are the "
             "local ones bit for bit (also asserted in `tests/test_ray_train.py`, tiny BERT), and it does more work "
             "than the local fit (Ray Train's worker group and gloo group, a checkpoint per epoch); that it can still "
             "time lower shows the noise of these shared cores (each run's epoch seconds are in its JSON), so read "
             "the seconds roughly. With two workers each takes half of every batch and DDP all-reduces the gradients; "
             "the robust risk is then averaged over the two halves, so a few labels differ. On these two shared "
             "cores a second worker competes for the same cores; a gain needs idle cores or nodes, not measured "
             "here. Accuracy: every run's learner calls most rows negative (16 steps on 240 training rows do not "
             "teach MiniLM the task at these settings): the table measures time and agreement, not quality.\n")
    return L


def _proj(refine) -> dict:
    big = next((r for r in reversed(refine) if r["engine"] == "ray" and r["n"] == 1_000_000 and not r.get("note")), None)
    us = big["per_row_us"] if big else float("nan")
    tokens_plain, tokens_cached = 400, 100
    gpu_h_plain = 10e6 * tokens_plain / VLLM_TOK_S_H100 / 3600
    gpu_h_cached = 10e6 * tokens_cached / VLLM_TOK_S_H100 / 3600
    return {"src": VLLM_SOURCE, "tok": VLLM_TOK_S_H100, "usd": GPU_HOUR_USD, "gh_plain": gpu_h_plain,
            "gh_cached": gpu_h_cached, "usd_plain": gpu_h_plain * GPU_HOUR_USD, "usd_cached": gpu_h_cached * GPU_HOUR_USD,
            "n1": gpu_h_plain / 8, "n4": gpu_h_plain / 32, "n16": gpu_h_plain / 128,
            "c1": gpu_h_cached / 8, "c4": gpu_h_cached / 32, "c16": gpu_h_cached / 128,
            "us": us, "refine_h": us * 10e6 / 1e6 / 3600}


PROJECTION = """## Projection: 10 million texts on N GPU nodes

Not measured: arithmetic from the figures above and one published throughput.

* **Annotation** dominates. Scoring a text is one prompt (4 shots + the text, ~400 tokens with a 7-8B model's
  tokenizer) and one generated token with its log-probabilities, so the cost is prompt tokens. Published vLLM
  throughput for Llama 3.1 8B (BF16) on one H100 80GB: ~{tok:,} tokens/s ({src}). That figure is generated-token
  throughput; prompt (prefill) tokens are processed in large batches at a higher rate, so using it for prompt
  tokens is conservative. 10M texts x 400 tokens / {tok:,} tokens/s = **{gh_plain:.0f} GPU-hours**
  (about **${usd_plain:,.0f}** at an assumed ${usd:.2f} per H100-hour). With vLLM's prefix caching the shared
  few-shot prefix is computed once, leaving ~100 tokens per text: **{gh_cached:.0f} GPU-hours (${usd_cached:,.0f})**.
  Wall time on N nodes of 8 GPUs (one vLLM server per GPU, the servers listed in `--base-url`, or one actor per
  GPU): {n1:.1f} h on 1 node, {n4:.1f} h on 4, {n16:.2f} h on 16 without prefix caching; {c1:.1f} h / {c4:.2f} h /
  {c16:.2f} h with it. Annotation scales linearly with GPUs: each shard is independent.
* **Refinement** (features from a cache, 5 rounds): measured here on the Ray engine at 1M rows (the run of the
  current code), {us:.0f} us per
  row on 2 contended CPU cores, i.e. ~{refine_h:.1f} h for 10M rows on this box if the per-row cost stays at its
  1M value (it fell from 100k to 1M as fixed costs were spread, table above; the store for 10M MiniLM rows is
  15 GB on disk, the driver's memory stays bounded). Of that, corpus scoring and feature reads scale with workers; the head's
  training is one sequential SGD pass per epoch and does not. Computing MiniLM features for 10M new texts is a
  separate cost (an encoder pass, parallel by shard; on GPUs a small fraction of the LLM pass).
* **What does not scale**: the per-round head training (sequential), the driver's per-row bookkeeping (texts plus
  ~30 MB per million rows), and Ray Data's per-pool start-up (~5-15 s per pool on this box, several pools per
  round), which dominates at small N (the 10k-row Ray run takes 11x the local one's time) and shrinks as N grows.
* The GPU path itself (`ray.data.llm` with vLLM on GPU nodes) is not built or tested here: no device was lent to
  this task. On GPU nodes today, run vLLM servers and give their URLs to `--base-url` (comma-separated) with
  `--engine ray`.
"""


if __name__ == "__main__":
    main()
