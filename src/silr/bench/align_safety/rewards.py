"""Stages ``annotate`` (Gemma-3-270M labels the corpus) and ``rewards`` (three reward models on MiniLM)."""

from __future__ import annotations

import json
import time

from silr.bench.align_safety.common import DATA, HERE, WORK, _fit_lr, _minilm, _save_summary, load_rewards, log, split_rows


def stage_annotate(args) -> None:
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from silr.annotate.local import LocalLMScorer
    from silr.annotate.prompts import load_prompt
    from silr.annotate.run import annotate_frame

    _, corpus, labeled = split_rows(args.n_corpus, args.n_labeled)
    spec = load_prompt(HERE / "prompts" / f"{DATA}.toml")
    scorer = LocalLMScorer("gemma-3-270m", batch_size=16)
    cache = WORK / "annotations.sqlite"
    frames, rec = [], None
    t0 = time.time()
    for start in range(0, len(corpus), args.chunk):
        part = corpus.iloc[start : start + args.chunk]
        out, rec = annotate_frame(part, "text", scorer, spec, labeled=labeled, shots=4, threshold=args.threshold,
                                  progress=False, cache=cache, seed=0)
        frames.append(out)
        log(f"annotate {start + len(part)}/{len(corpus)} ({time.time() - t0:.0f}s)")
    allf = pd.concat(frames, ignore_index=True)
    # one threshold for all chunks (fitted on the 50 gold rows): take it from the last record
    thr = float(rec["threshold"]["value"])
    allf["pseudo_label"] = (allf["llm_score"] > thr).astype(int)
    allf.to_csv(WORK / "corpus_annotated.csv", index=False)
    labeled.to_csv(WORK / "labeled.csv", index=False)
    acc = float((allf["pseudo_label"] == allf["label"]).mean())
    _save_summary({"annotate": {"n_corpus": len(allf), "n_labeled": len(labeled), "threshold": thr,
                                "llm_label_accuracy_on_corpus": acc, "positive_rate": float(allf.pseudo_label.mean()),
                                "seconds": round(time.time() - t0, 1), "threshold_record": rec["threshold"]}})
    log(f"LLM label accuracy on the corpus: {acc:.3f}")



def stage_rewards(args) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from silr.corpora import load_shared
    from silr.inputs import RefineInputs
    from silr.run_folder import write_run
    from silr.texts import refine_texts

    corpus = pd.read_csv(WORK / "corpus_annotated.csv")
    labeled = pd.read_csv(WORK / "labeled.csv")
    pseudo = corpus["pseudo_label"].to_numpy().astype(np.int8)
    lab_pseudo = pseudo[: len(labeled)]  # the labeled rows are the corpus's first rows
    assert (corpus["text"].iloc[: len(labeled)].to_numpy() == labeled["text"].to_numpy()).all()
    t0 = time.time()
    inputs = RefineInputs(corpus["text"].tolist(), pseudo, labeled["text"].tolist(),
                          labeled["label"].to_numpy().astype(np.int8), lab_pseudo)
    res = refine_texts(inputs, backbone="minilm", rounds=5, seed=0, progress=False)
    write_run(res, WORK / "reward_silr", report=False)
    t_silr = time.time() - t0
    bb = _minilm()
    Xc = bb.transform(corpus["text"].tolist())
    vanilla = _fit_lr(Xc, pseudo, balanced=True)
    (WORK / "reward_vanilla.json").write_text(json.dumps({"coef": vanilla.coef.tolist(), "intercept": vanilla.intercept,
                                                          "trained_on": "raw LLM labels of the corpus, class-balanced"}))
    train = load_shared(DATA, "train")
    judge = _fit_lr(bb.transform(train["text"].tolist()), train["label"].to_numpy(), balanced=False)
    (WORK / "reward_judge.json").write_text(json.dumps({"coef": judge.coef.tolist(), "intercept": judge.intercept,
                                                        "trained_on": f"all {len(train)} gold train labels"}))
    test = load_shared(DATA, "test")
    yt = test["label"].to_numpy()
    rms = load_rewards()
    ev = {}
    for k, rm in rms.items():
        z = rm.score(test["text"].tolist())
        ev[k] = {"test_accuracy": float(((z > 0) == yt).mean()), "test_auc": float(roc_auc_score(yt, z)),
                 "test_positive_rate": float((z > 0).mean())}
    yc = corpus["label"].to_numpy()
    ev["llm_raw_labels_on_corpus"] = {"accuracy": float((pseudo == yc).mean()),
                                      "auc": float(roc_auc_score(yc, corpus["llm_score"]))}
    ev["silr_final_labels_on_corpus"] = {"accuracy": float((res.labels["final"].to_numpy() == yc).mean())}
    ev["silr"]["final_source"] = res.summary.get("final_source")
    ev["silr"]["selection"] = res.summary.get("selection")
    ev["silr"]["refine_seconds"] = round(t_silr, 1)
    _save_summary({"rewards": ev})
    log(json.dumps(ev, indent=1))

