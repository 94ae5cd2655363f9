"""Settings sweep on the real-LLM track: silr variants against the baselines they must beat.

For each data set with stored Gemma scores (benchmarks/llm_scores/), each seed: the LLM labels (threshold
fitted on the 50 labeled rows), LR on the 50 labels, class-balanced LR and cleanlab on the pseudo-labels, and
every silr variant given as NAME=JSON params. Prints per data set mean test / corpus accuracy and writes
a JSON record of every figure. Evaluation reads the gold labels of the corpus and test split here only.

Usage: python benchmarks/sweep_llm.py --max-corpus 600 --max-test 200 \
           --variant 'hard={"_hard": true}' --variant 'stack={}' --variant 'loop={"relabel": "stack"}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="rotten_tomatoes,sst2,mr,subj,sms_spam,peptide_amp_modlamp,"
                    "moleculenet_bace,selerosa,patent_claims_cpc,pku_saferlhf_safety")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-corpus", type=int, default=600)
    ap.add_argument("--max-test", type=int, default=200)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--baselines", default="llm,lr_50,lr_balanced,cleanlab")
    ap.add_argument("--backbone", default="", help="dataset=backbone,... overrides")
    ap.add_argument("--default-backbone", default="llm",
                    help="'llm' (Gemma's hidden state under the task prompt) or '' (each task's encoder)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from silr.bench.data import load_task, task_features
    from silr.bench.methods import run_method
    from silr.bench.runner import BENCH_SILR, _match_scores, llm_pseudo_labels, load_llm_scores, sample_labeled

    variants = {}
    for v in args.variant:
        name, _, js = v.partition("=")
        variants[name] = json.loads(js or "{}")
    overrides = dict(kv.split("=") for kv in args.backbone.split(",") if kv)
    records = []
    for name in [d for d in args.datasets.split(",") if d]:
        scores = load_llm_scores(name, HERE / "llm_scores")
        if scores is None:
            print(f"[skip] {name}: no stored scores", flush=True)
            continue
        task = load_task(name, max_corpus=args.max_corpus, max_test=args.max_test)
        cs, ts = _match_scores(task.corpus, scores, "corpus"), _match_scores(task.test, scores, "test")
        if np.isnan(cs).mean() > 0.02 or np.isnan(ts).mean() > 0.02:
            print(f"[skip] {name}: scores missing", flush=True)
            continue
        Xc, Xt, bb = task_features(task, overrides.get(name, args.default_backbone or None),
                                   prompts_dir=HERE / "prompts")
        y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
        med = np.nanmedian(cs)
        cs, ts = np.nan_to_num(cs, nan=med), np.nan_to_num(ts, nan=med)
        for seed in [int(x) for x in args.seeds.split(",")]:
            lab0 = sample_labeled(y, None, 50, seed)
            s, s_test, thr = llm_pseudo_labels(cs, ts, lab0, y[lab0])
            lab = sample_labeled(y, s, 50, seed)
            rec = {"dataset": name, "seed": seed, "backbone": bb, "n_corpus": int(y.size), "n_test": int(yt.size),
                   "threshold": thr, "methods": {}}
            for m in [b for b in args.baselines.split(",") if b]:
                r = run_method(m, Xc, Xt, s, s_test, lab, y, yt, seed=seed)
                rec["methods"][m] = _fig(r, y, yt, s_test)
            for vname, params in variants.items():
                p = {**BENCH_SILR, **params}
                hard = p.pop("_hard", False)
                r = run_method("silr", Xc, Xt, s, s_test, lab, y, yt, seed=seed, silr_params=p,
                               llm_scores=None if hard else (cs, ts))
                rec["methods"][vname] = _fig(r, y, yt, s_test)
            records.append(rec)
            print(f"{name} seed {seed} ({bb}): " + ", ".join(
                f"{k} {v['test']:.3f}/{v['corpus']:.3f}" + (f"[{v['source']}]" if v.get("source") else "")
                for k, v in rec["methods"].items()), flush=True)
    # summary
    names = sorted({k for r in records for k in r["methods"]}, key=lambda k: list(records[0]["methods"]).index(k)
                   if records and k in records[0]["methods"] else 99)
    print("\nmean test accuracy (corpus accuracy) over seeds")
    print("dataset," + ",".join(names))
    for d in dict.fromkeys(r["dataset"] for r in records):
        rs = [r for r in records if r["dataset"] == d]
        cells = []
        for k in names:
            t = [r["methods"][k]["test"] for r in rs if k in r["methods"]]
            c = [r["methods"][k]["corpus"] for r in rs if k in r["methods"]]
            cells.append(f"{np.mean(t):.3f} ({np.mean(c):.3f})")
        print(d + "," + ",".join(cells))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": platform.platform(), "time": time.ctime(),
                                              "args": vars(args), "records": records}, indent=1))


def _fig(r, y, yt, s_test) -> dict:
    import numpy as np

    tp = r.test_pred if r.test_pred is not None else s_test  # silr refused: the LLM labels stand
    return {"test": float(np.mean(np.asarray(tp) == yt)) if tp is not None else float("nan"),
            "corpus": float(np.mean(np.asarray(r.corpus_pred) == y)) if r.corpus_pred is not None else float("nan"),
            "source": r.info.get("final_source"), "error": r.error,
            "rounds": [x.get("test_acc") for x in r.rounds]}


if __name__ == "__main__":
    main()
