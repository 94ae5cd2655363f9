"""How good the Gemma-3-270M few-shot labels are, per benchmark data set: accuracy and AUC against gold on
the corpus (train split sample) and the test split sample, from the stored scores in benchmarks/llm_scores/.

Accuracy is given at the raw threshold 0 (log p(pos) = log p(neg)) and at the threshold fitted on 50 labeled
corpus rows (the accuracy-maximising cut, mean over seeds 0-2: what the LLM track's pseudo-labels are).
This is an evaluation step: it reads gold labels. Writes benchmarks/ANNOTATOR.md.

Usage: python benchmarks/annotator_quality.py [--max-corpus 2000 --max-test 500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from silr.env import use_local_models  # noqa: E402

use_local_models()


def main(argv=None, *, bench_dir: Path = Path("benchmarks")) -> None:
    HERE = Path(bench_dir)
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-corpus", type=int, default=2000)
    ap.add_argument("--max-test", type=int, default=500)
    ap.add_argument("--out", default=None, help="default: BENCH_DIR/ANNOTATOR.md")
    args = ap.parse_args(argv)
    args.out = args.out or str(HERE / "ANNOTATOR.md")
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from silr.bench.data import TASKS, load_task
    from silr.bench.runner import _match_scores, llm_pseudo_labels, load_llm_scores, sample_labeled

    rows = []
    for name in TASKS:
        scores = load_llm_scores(name, HERE / "llm_scores")
        if scores is None:
            continue
        try:
            task = load_task(name, max_corpus=args.max_corpus, max_test=args.max_test)
        except FileNotFoundError:
            continue
        cs, ts = _match_scores(task.corpus, scores, "corpus"), _match_scores(task.test, scores, "test")
        if np.isnan(cs).mean() > 0.02 or np.isnan(ts).mean() > 0.02:
            print(f"[skip] {name}: stored scores do not cover the {args.max_corpus}/{args.max_test} sample")
            continue
        y, yt = task.corpus["label"].to_numpy(), task.test["label"].to_numpy()
        med = np.nanmedian(cs)
        cs, ts = np.nan_to_num(cs, nan=med), np.nan_to_num(ts, nan=med)
        cal = []
        for seed in (0, 1, 2):
            lab = sample_labeled(y.size, 50, seed)
            s, st, _ = llm_pseudo_labels(cs, ts, lab, y[lab])
            cal.append((np.mean(s == y), np.mean(st == yt)))
        meta = json.loads((HERE / "llm_scores" / f"{name}.json").read_text())
        rows.append({
            "dataset": name, "n": (len(y), len(yt)), "pos_rate": float(y.mean()),
            "acc0": (float(np.mean((cs > 0) == y)), float(np.mean((ts > 0) == yt))),
            "acc_cal": tuple(float(v) for v in np.mean(cal, axis=0)),
            "auc": (float(roc_auc_score(y, cs)), float(roc_auc_score(yt, ts))),
            "words": "/".join(w.strip() for w in meta["label_words"]), "prompt": meta["prompt_file"],
            "seconds": meta.get("seconds"),
        })
    lines = ["# Gemma-3-270M few-shot annotator quality (evaluation against gold)", "",
             f"Corpus = stratified train-split sample (cap {args.max_corpus}), test = test-split sample (cap "
             f"{args.max_test}); 4 balanced shots from a fixed pool of 8 train rows; score = log p(pos word) - "
             "log p(neg word) after the prompt; prompts in the file named per row. `acc@0`: threshold 0; "
             "`acc@50`: threshold that maximises accuracy on 50 labeled corpus rows (mean of seeds 0-2).", "",
             "| data set | corpus / test rows | positive rate | label words | AUC corpus | AUC test | acc@0 corpus | "
             "acc@0 test | acc@50 corpus | acc@50 test | prompt |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['n'][0]} / {r['n'][1]} | {r['pos_rate']:.2f} | {r['words']} | "
                     f"{r['auc'][0]:.3f} | {r['auc'][1]:.3f} | {r['acc0'][0]:.3f} | {r['acc0'][1]:.3f} | "
                     f"{r['acc_cal'][0]:.3f} | {r['acc_cal'][1]:.3f} | `{r['prompt']}` |")
    lines += ["", "Reproduce: `python benchmarks/llm_annotate.py --max-corpus 2000 --max-test 500 --hidden` (resumable), "
              "then `python benchmarks/annotator_quality.py`."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
