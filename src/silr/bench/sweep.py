"""Settings sweep on the real-LLM track: silr variants against the baselines they must beat.

Defaults are chosen on the tuning group only (:data:`silr.bench.groups.TUNING`, the default data sets here);
naming a held-out data set needs ``--allow-held-out`` and the figures are then not for choosing defaults.
For each data set with stored Gemma scores, each seed: one plain draw of 50 labeled rows (the LLM threshold is
fitted on them and every method uses them), the baselines, and every silr variant given as NAME=JSON params,
all on the same inputs as the suite (:mod:`silr.bench.methods`). Prints mean test / corpus accuracy per data set
and writes a JSON record of every figure. Evaluation reads the gold labels of the corpus and test split here only.

Usage: python benchmarks/sweep_llm.py --max-corpus 600 --max-test 200 --variant 'stack={}' \
           --variant 'nostackprobe={"stack_probe": false}'
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from silr.env import use_local_models  # noqa: E402

use_local_models()


def main(argv=None, *, bench_dir: Path = Path("benchmarks")) -> None:
    from silr.bench.groups import HELD_OUT, TUNING

    here = Path(bench_dir)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(TUNING))
    ap.add_argument("--allow-held-out", action="store_true")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-corpus", type=int, default=600)
    ap.add_argument("--max-test", type=int, default=200)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--baselines", default="llm,lr_50,lr_50_features,lr_balanced,cleanlab")
    ap.add_argument("--default-backbone", default="llm",
                    help="'llm' (Gemma's hidden state under the task prompt) or '' (each task's encoder)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    held = [d for d in datasets if d in HELD_OUT]
    if held and not args.allow_held_out:
        ap.error(f"{', '.join(held)} in the held-out group: defaults are chosen on the tuning group only "
                 "(pass --allow-held-out to look anyway)")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from silr.bench.data import load_task, task_features
    from silr.bench.methods import Inputs, run_method
    from silr.bench.runner import BENCH_SILR, _match_scores, llm_pseudo_labels, load_llm_scores, sample_labeled

    variants = {}
    for v in args.variant:
        name, _, js = v.partition("=")
        variants[name] = json.loads(js or "{}")
    records = []
    for name in datasets:
        scores = load_llm_scores(name, here / "llm_scores")
        if scores is None:
            print(f"[skip] {name}: no stored scores", flush=True)
            continue
        task = load_task(name, max_corpus=args.max_corpus, max_test=args.max_test)
        cs, ts = _match_scores(task.corpus, scores, "corpus"), _match_scores(task.test, scores, "test")
        if np.isnan(cs).mean() > 0.02 or np.isnan(ts).mean() > 0.02:
            print(f"[skip] {name}: scores missing", flush=True)
            continue
        Xc, Xt, bb = task_features(task, args.default_backbone or None, prompts_dir=here / "prompts")
        y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
        med = np.nanmedian(cs)
        cs, ts = np.nan_to_num(cs, nan=med), np.nan_to_num(ts, nan=med)
        for seed in [int(x) for x in args.seeds.split(",")]:
            lab = sample_labeled(y.size, 50, seed)
            s, s_test, thr = llm_pseudo_labels(cs, ts, lab, y[lab])
            rec = {"dataset": name, "seed": seed, "backbone": bb, "n_corpus": int(y.size), "n_test": int(yt.size),
                   "threshold": thr, "methods": {}}
            runs = [(m, m, dict(BENCH_SILR)) for m in args.baselines.split(",") if m]
            runs += [(v, "silr", {**BENCH_SILR, **p}) for v, p in variants.items()]
            for label, method, params in runs:
                r = run_method(method, Inputs(Xc, Xt, s, s_test, lab, y, yt, cs, ts, True, seed, params))
                rec["methods"][label] = _fig(r, y, yt)
            records.append(rec)
            print(f"{name} seed {seed} ({bb}): " + ", ".join(
                f"{k} {v['test']:.3f}/{v['corpus']:.3f}" + (f"[{v['source']}]" if v.get("source") else "")
                for k, v in rec["methods"].items()), flush=True)
    names = list(dict.fromkeys(k for r in records for k in r["methods"]))
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


def _fig(r, y, yt) -> dict:
    import numpy as np

    acc = (lambda p, g: float(np.mean(np.asarray(p) == g)) if p is not None else float("nan"))  # noqa: E731
    return {"test": acc(r.test_pred, yt), "corpus": acc(r.corpus_pred, y), "source": r.info.get("final_source"),
            "error": r.error, "rounds": [x.get("test_acc") for x in r.rounds]}


if __name__ == "__main__":
    main()
