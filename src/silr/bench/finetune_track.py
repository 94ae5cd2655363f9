"""Fine-tuning track of the benchmark: MiniLM fine-tuned end to end on the real-LLM cells (issue 15).

One run = one data set x one seed, on the real-LLM cells of the suite: the 2,000-row corpus / 500-row test
samples of :func:`silr.bench.data.load_task`, Gemma-3-270M 4-shot scores from ``benchmarks/llm_scores``, 50
labeled rows per seed, the LLM's threshold fitted on those same 50 rows (the suite's own functions). Every method
uses all-MiniLM-L6-v2:

* ``llm``        the LLM's thresholded labels;
* ``lr50``       logistic regression on the 50 rows, frozen MiniLM features (standardised, C=1);
* ``ft50``       MiniLM fine-tuned on the 50 rows alone (PN risk);
* ``setfit50``   SetFit (the ``setfit`` package) on the 50 rows, same local MiniLM;
* ``ft_llm``     MiniLM fine-tuned on the LLM's labels (plain PN on the corpus);
* ``silr_ft``    silr's rounds with :class:`silr.finetune.FineTuneLearner`: priors from the 50 rows (the LLM
                 threshold refitted out of fold for round 1, as the refiner does), robust UU on the corpus +
                 ``w`` x supervised PN on the 50 rows, fresh model each round, relabel the corpus by sign.

Gold labels are read only for the 50 labeled rows (training, priors) and for scoring. One JSON per run under
``results/finetune/<tag>/``; :mod:`benchmarks.finetune_report` writes ``FINETUNE.md`` from them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from silr.io import atomic_write_text

__all__ = ["TUNING", "HELD_OUT", "METHODS", "run_cell", "cell_inputs"]

#: silr.bench.groups (CONTRACT item 4), restricted to the cells where Gemma has signal (corpus AUC >= 0.7)
TUNING = ("rotten_tomatoes", "subj")
HELD_OUT = ("sst2", "mr", "sms_spam")
METHODS = ("llm", "lr50", "ft50", "setfit50", "ft_llm", "silr_ft")
#: the refiner's full default path and the suite's baselines (silr.bench.finetune_refiner)
REFINER_METHODS = ("llm", "lr50", "lr_50", "lr_balanced", "cleanlab", "silr_frozen", "ft50", "ft_llm", "silr_ftr",
                   "setfit50")
#: methods that do not read the LLM's scores or labels: one run per (data set, seed), reused across LLM settings
LLM_FREE = ("lr50", "ft50", "setfit50")
#: fine-tuned methods that read only the texts and the LLM's labels: reused across feature settings of one prompt
LLM_LABELS = ("ft_llm",)

#: silr_ft / ft_llm learner settings (PAPER.md section 8's calibration)
FT_DEFAULT = {"lr": 3e-5, "epochs": 2, "batch_size": 32, "max_length": 64}
#: the 50-row fine-tune: 4 steps an epoch, so more epochs and a larger rate (no held-out rows to pick from)
FT50_DEFAULT = {"lr": 5e-5, "epochs": 15, "batch_size": 16, "max_length": 64}
#: the benchmark's prompt files (benchmarks/prompts/<task>.toml), for the ``llm`` features
PROMPTS_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "prompts"
SETFIT_DEFAULT = {"num_iterations": 20, "num_epochs": 1, "batch_size": 16, "max_length": 64}


def _match(frame, scores, split: str) -> np.ndarray:
    sub = scores[scores["split"] == split].drop_duplicates("row").set_index("row")
    out = np.full(len(frame), np.nan)
    have = frame["row"].isin(sub.index).to_numpy()
    m = sub.loc[frame["row"][have]]
    ok = m["hash"].to_numpy() == frame["hash"][have].to_numpy()
    out[np.flatnonzero(have)[ok]] = m["score"].to_numpy()[ok]
    return out


def cell_inputs(name: str, seed: int, scores_dir: Path, n_labeled: int = 50) -> dict:
    """Corpus/test texts and gold, LLM labels, the labeled rows, exactly as the suite's real-LLM track forms them."""
    from silr.bench.data import load_task
    from silr.bench.runner import llm_pseudo_labels, load_llm_scores, sample_labeled

    task = load_task(name, max_corpus=2000, max_test=500)
    scores = load_llm_scores(name, scores_dir)
    if scores is None:
        raise FileNotFoundError(f"no stored LLM scores for {name} in {scores_dir}")
    cs, ts = _match(task.corpus, scores, "corpus"), _match(task.test, scores, "test")
    y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
    lab = sample_labeled(y.size, n_labeled, seed)  # one uniform draw per seed, no redraw (the suite's rule)
    s, s_test, thr = llm_pseudo_labels(cs, ts, lab, y[lab])
    med = np.nanmedian(cs)
    return {"task": task, "texts": task.corpus["text"].astype(str).tolist(), "test_texts": task.test["text"].astype(str).tolist(),
            "y": y, "yt": yt, "s": s.astype(np.int64), "s_test": s_test.astype(np.int64), "lab": lab, "threshold": thr,
            "llm_score": np.nan_to_num(cs, nan=med), "llm_score_test": np.nan_to_num(ts, nan=med)}


def _acc(pred, y) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y)))


def _learner(params: dict, progress: bool):
    from silr.finetune import FineTuneLearner

    return FineTuneLearner(progress=progress, **params)


def _val_mask(n: int, seed: int, frac: float = 0.125) -> np.ndarray:
    m = np.zeros(n, bool)
    m[np.random.default_rng(seed).choice(n, int(round(frac * n)), replace=False)] = True
    return m


def _ft_scores(L, inp) -> tuple[np.ndarray, np.ndarray]:
    return L.decision_function(inp["texts"]), L.decision_function(inp["test_texts"])


def track_features(inp: dict) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of the cell's corpus and test rows, the same for every frozen-feature method:
    ``inp["features"]`` = ``minilm`` (default), ``llm`` (Gemma-3-270M's own final hidden state under the prompt
    that scored the cell, ``inp["shots"]`` examples: one linear direction of it is the LLM's score) or ``llm:K``
    (the state of its layer K at the same token). Cached by
    content on disk and in ``inp``."""
    if "_X" not in inp:
        kind = inp.get("features", "minilm")
        if kind == "llm" or kind.startswith("llm:"):  # llm:K = the state of layer K (silr.backbones.prompted)
            from silr.bench.data import llm_encoder

            layer = int(kind.split(":", 1)[1]) if ":" in kind else None
            bb = llm_encoder(inp["task"], PROMPTS_DIR, shots=int(inp.get("shots", 4)), layer=layer)
            bb.fit(inp["texts"])
            if layer is not None:
                # a middle layer's state carries a few huge dimensions (Gemma's run to ~1e4): every method gets
                # it standardised by the corpus mean and spread (label-free; silr's head does this itself, the
                # sklearn baselines' lbfgs does not converge on it raw)
                Xc, Xt = np.asarray(bb.transform(inp["texts"])), np.asarray(bb.transform(inp["test_texts"]))
                mu, sd = Xc.mean(0), Xc.std(0)
                sd[sd == 0] = 1.0
                inp["_X"] = ((Xc - mu) / sd, (Xt - mu) / sd)
                return inp["_X"]
        else:
            from silr.backbones import get_backbone

            bb = get_backbone(kind, progress=False)
        inp["_X"] = (np.asarray(bb.transform(inp["texts"])), np.asarray(bb.transform(inp["test_texts"])))
    return inp["_X"]


def m_lr50(inp, **_):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xc, Xt = track_features(inp)
    lab = inp["lab"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)).fit(Xc[lab], inp["y"][lab])
    return {"corpus_pred": clf.predict(Xc), "test_pred": clf.predict(Xt)}


def m_ft50(inp, *, seed, params, progress, **_):
    from silr.risks import UUWeights

    lab = inp["lab"]
    L = _learner({**FT50_DEFAULT, **params.get("ft50", {})}, progress)
    texts = [inp["texts"][i] for i in lab]
    L.fit(texts, inp["y"][lab], UUWeights(1, 0, 0, 1), risk="pn", val_mask=None, seed=seed)
    gc, gt = _ft_scores(L, inp)
    return {"corpus_pred": gc > 0, "test_pred": gt > 0, "info": {"history": L.history_}}


def m_setfit50(inp, *, seed, params, progress, **_):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from silr.finetune import default_model_dir

    p = {**SETFIT_DEFAULT, **params.get("setfit50", {})}
    lab = inp["lab"]
    train = Dataset.from_dict({"text": [inp["texts"][i] for i in lab], "label": inp["y"][lab].tolist()})
    model = SetFitModel.from_pretrained(str(default_model_dir()), local_files_only=True)
    with tempfile.TemporaryDirectory(prefix="silr-setfit-") as out:  # SetFit writes checkpoints (default ./checkpoints)
        args = TrainingArguments(output_dir=out, batch_size=p["batch_size"], num_epochs=p["num_epochs"],
                                 num_iterations=p["num_iterations"], max_length=p["max_length"], seed=seed,
                                 show_progress_bar=progress)
        Trainer(model=model, args=args, train_dataset=train).train()
    pc = np.asarray(model.predict(inp["texts"], batch_size=128, show_progress_bar=False))
    pt = np.asarray(model.predict(inp["test_texts"], batch_size=128, show_progress_bar=False))
    return {"corpus_pred": pc.astype(int), "test_pred": pt.astype(int), "info": {"params": p}}


def m_ft_llm(inp, *, seed, params, progress, scores_path=None, **_):
    from silr.risks import UUWeights

    L = _learner({**FT_DEFAULT, **params.get("ft_llm", {})}, progress)
    L.fit(inp["texts"], inp["s"], UUWeights(1, 0, 0, 1), risk="pn", val_mask=_val_mask(len(inp["texts"]), seed), seed=seed)
    gc, gt = _ft_scores(L, inp)
    if scores_path is not None:  # for the report's post-hoc stack (LLM score + this score, fitted on the 50 rows)
        import io

        from silr.io import atomic_write_bytes

        buf = io.BytesIO()
        np.savez_compressed(buf, corpus=np.asarray(gc, np.float64), test=np.asarray(gt, np.float64))
        atomic_write_bytes(Path(scores_path), buf.getvalue())
    return {"corpus_pred": gc > 0, "test_pred": gt > 0,
            "info": {"history": L.history_, "best_epoch": L.best_epoch_, "fit_seconds": L.fit_seconds_,
                     "fit_cpu_seconds": getattr(L, "fit_cpu_seconds_", None)}}


def m_silr_ft(inp, *, seed, params, progress, rounds: int = 1, **_):
    """silr's rounds with the fine-tuned learner (see the module docstring); per-round figures in ``rounds``."""
    from silr.priors import estimate_priors
    from silr.risks import UUWeights
    from silr.selection import threshold_oof_predict

    p = {**FT_DEFAULT, **params.get("silr_ft", {})}
    w = float(p.pop("w", 0.3))
    lab, y = inp["lab"], inp["y"]
    texts_lab = [inp["texts"][i] for i in lab]
    labels = inp["s"]
    # round 1: the labeled rows' LLM labels from a threshold refitted out of fold (the threshold was fitted on them)
    s_lab = threshold_oof_predict(inp["llm_score"][lab], y[lab]).astype(np.int64)
    recs, out = [], None
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        est = estimate_priors(y[lab], s_lab, float(labels.mean()), n_bootstrap=1000, seed=seed + r)
        rec = {"round": r, "priors": {"pi": est.pi, "theta_p": est.theta_p, "theta_n": est.theta_n}}
        if not est.gap > 0.03:
            rec["stopped"] = f"estimated theta gap {est.gap:.3f} <= 0.03"
            recs.append(rec)
            break
        wts = UUWeights.from_priors(est.pi, est.theta_p, est.theta_n)
        L = _learner(p, progress)
        L.fit(inp["texts"], labels, wts, risk="robust_uu", val_mask=_val_mask(len(labels), seed * 1000 + r),
              seed=seed * 1000 + r, labeled=(texts_lab, y[lab], w) if w > 0 else None)
        gc, gt = _ft_scores(L, inp)
        labels = (gc > 0).astype(np.int64)
        # later rounds' labeled-row labels: the classifier's own, in sample (it trained on those rows when w > 0,
        # so the next round's priors are optimistic; recorded, not hidden)
        s_lab = labels[lab]
        out = {"corpus_pred": gc > 0, "test_pred": gt > 0}
        rec.update({"corpus_acc": _acc(gc > 0, y), "test_acc": _acc(gt > 0, inp["yt"]), "best_epoch": L.best_epoch_,
                    "history": L.history_, "fit_seconds": round(L.fit_seconds_, 1),
                    "fit_cpu_seconds": round(getattr(L, "fit_cpu_seconds_", float("nan")), 1),
                    "seconds": round(time.perf_counter() - t0, 1)})
        recs.append(rec)
    if out is None:
        return {"corpus_pred": inp["s"], "test_pred": inp["s_test"], "rounds": recs, "info": {"w": w, "handed_back": "llm"}}
    return {**out, "rounds": recs, "info": {"w": w, "params": p}}


def _engine() -> dict:
    from silr.bench.runner import engine_version

    return engine_version()


def frozen_pass_seconds(texts, threads: int = 1) -> tuple[float, float]:
    """Wall and CPU seconds of one frozen all-MiniLM-L6-v2 encoding pass over ``texts`` (no cache; same thread count and
    token limit as the fine-tuning learner), the unit of the fine-tuning cost ratio."""
    import torch
    from sentence_transformers import SentenceTransformer

    from silr.finetune import default_model_dir

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = SentenceTransformer(str(default_model_dir()), device="cpu", local_files_only=True)
        m.max_seq_length = FT_DEFAULT["max_length"]
        t0, c0 = time.perf_counter(), time.process_time()
        m.encode(list(texts), batch_size=128, show_progress_bar=False)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(prev)


RUNNERS = {"lr50": m_lr50, "ft50": m_ft50, "setfit50": m_setfit50, "ft_llm": m_ft_llm, "silr_ft": m_silr_ft}


def _runner(m: str):
    from silr.bench import finetune_refiner as fr

    if m in fr.SUITE_METHODS:
        return fr.m_suite(m)
    if m == "silr_ftr":
        return fr.m_silr_ftr
    return RUNNERS[m]


def _reusable(out_dir: Path, name: str, seed: int, m: str, lab: list, params: dict,
              features: str = "minilm", llm: dict | None = None) -> tuple[dict, str] | None:
    """A finished run of the same method on the same inputs under another tag: an LLM-free method (same data set,
    seed, labeled rows, parameters), or a fine-tuned method that reads the LLM's labels (``ft_llm``) when ``llm``
    (this cell's ``{"prompt_hash", "threshold"}``) matches too: the MiniLM it fine-tunes ignores the features."""
    for other in sorted(Path(out_dir).parent.glob(f"*/{name}__seed{seed}.json")):
        if other.parent == Path(out_dir):
            continue
        try:
            rec = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if m == "lr50" and (features != "minilm" or rec.get("features", "minilm") != "minilm"):
            continue  # LLM features depend on the prompt: not reusable across cells
        if m in LLM_LABELS and (llm is None or llm.get("prompt_hash") is None or (rec.get("llm_scores") or {}).get("prompt_hash") != llm["prompt_hash"]
                                or rec.get("threshold") != llm["threshold"]):
            continue
        r = rec.get("methods", {}).get(m)
        if rec.get("labeled_rows") == lab and r and not r.get("error") and r.get("params", {}) == params.get(m, {}) \
                and not r.get("reused_from"):
            return r, other.parent.name
    return None


def run_cell(name: str, seed: int, *, out_dir: Path, scores_dir: Path, methods=METHODS, params: dict | None = None,
             rounds: int = 1, progress: bool = False, log=print, reuse: bool = True, features: str = "minilm") -> dict:
    """Run (or resume) one data set x seed; the JSON is rewritten after every method, finished methods are kept.
    ``features``: the frozen features of every frozen-feature method (``minilm`` or ``llm``, see
    :func:`track_features`); the fine-tuned methods always fine-tune MiniLM."""
    params = params or {}
    path = Path(out_dir) / f"{name}__seed{seed}.json"
    rec = json.loads(path.read_text()) if path.is_file() else None
    inp = cell_inputs(name, seed, scores_dir)
    meta = Path(scores_dir) / f"{name}.json"
    inp["features"] = features
    inp["shots"] = json.loads(meta.read_text()).get("n_shots", 4) if meta.is_file() else 4
    if rec is not None and rec.get("features", "minilm") != features:
        raise ValueError(f"{path} holds runs on {rec.get('features', 'minilm')} features, not {features}: use another tag")
    y, yt = inp["y"], inp["yt"]
    if rec is None:
        from silr.bench.groups import group_of

        rec = {"dataset": name, "seed": seed, "group": group_of(name),
               "n_corpus": int(y.size), "n_test": int(yt.size), "n_labeled": int(inp["lab"].size),
               "threshold": inp["threshold"], "labeled_rows": inp["lab"].tolist(), "features": features,
               "methods": {}}
        meta = Path(scores_dir) / f"{name}.json"
        if meta.is_file():
            m_ = json.loads(meta.read_text())
            rec["llm_scores"] = {"dir": str(scores_dir), "n_shots": m_.get("n_shots", len(m_.get("prompt", {}).get("shots", []))),
                                 "prompt_hash": m_.get("prompt", {}).get("hash"), "model": m_.get("model", {}).get("model")}
        rec["engine"] = _engine()
    rec["methods"]["llm"] = {"corpus_acc": _acc(inp["s"], y), "test_acc": _acc(inp["s_test"], yt), "seconds": 0.0}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for m in methods:
        borrow = m.endswith("?")  # "ft50?": only a finished run of the same inputs under another tag, never a new run
        m = m.rstrip("?")
        if m == "llm" or (m in rec["methods"] and not rec["methods"][m].get("error")):
            continue
        if reuse and m in LLM_FREE + LLM_LABELS:
            llm = {"prompt_hash": (rec.get("llm_scores") or {}).get("prompt_hash"), "threshold": rec.get("threshold")}
            got = _reusable(out_dir, name, seed, m, rec["labeled_rows"], params, features, llm)
            if got is not None:
                rec["methods"][m] = {**got[0], "reused_from": got[1]}
                log(f"{name} seed {seed} {m}: reused from {got[1]}")
                continue
        if borrow:
            log(f"{name} seed {seed} {m}: no finished run of the same inputs to reuse; not run (asked with '?')")
            continue
        if m in ("silr_ft", "ft_llm", "silr_ftr") and "frozen_pass" not in rec:
            # the cost unit, measured side by side with the fine-tuning rounds (the CPU is shared: load recorded)
            load = os.getloadavg()[0]
            wall, cpu = frozen_pass_seconds(inp["texts"])
            rec["frozen_pass"] = {"texts": len(inp["texts"]), "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                                  "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            r = _runner(m)(inp, seed=seed, params=params, progress=progress, rounds=rounds,
                           scores_path=Path(out_dir) / f"{name}__seed{seed}__{m}.npz")
            res = {"corpus_acc": _acc(r["corpus_pred"], y), "test_acc": _acc(r["test_pred"], yt),
                   "rounds": r.get("rounds", []), "info": r.get("info", {}), "error": None}
        except Exception as e:  # noqa: BLE001 - one method's failure is recorded, the others run
            res = {"corpus_acc": None, "test_acc": None, "rounds": [], "info": {}, "error": f"{type(e).__name__}: {e}"}
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["load_before"] = round(load, 2)
        res["load_after"] = round(os.getloadavg()[0], 2)
        res["params"] = params.get(m, {})
        res["engine"] = _engine()  # per method: a method rerun on a later engine says so (the record's is the first)
        rec["methods"][m] = res
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rec, indent=1, default=float))
        log(f"{name} seed {seed} {m}: test {res['test_acc']} corpus {res['corpus_acc']} ({res['seconds']}s, "
            f"load {res['load_before']}) {res['error'] or ''}")
    atomic_write_text(path, json.dumps(rec, indent=1, default=float))
    return rec
