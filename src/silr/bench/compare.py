"""Old vs new stored runs, cell by cell: every method's mean test accuracy, silr's and the best baseline's.

Usage: python -m silr.bench.compare OLD_RESULTS_DIR NEW_RESULTS_DIR [--out FILE]
(e.g. the runs of a past commit extracted with ``git archive COMMIT benchmarks/results/main``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from silr.bench.report import BEST_OF, LABELS, _mean_sd, aggregate
from silr.bench.runner import load_records

__all__ = ["compare_markdown", "main"]

#: The best-of baseline of the old RESULTS.md (LLM labels, LR on 50 labels, balanced LR, cleanlab).
OLD_BEST_OF = ("llm", "lr_50", "lr_balanced", "cleanlab")


def _best(means: dict, pool) -> tuple[float, str]:
    cands = [(means[m], m) for m in pool if not np.isnan(means.get(m, np.nan))]
    return max(cands) if cands else (float("nan"), "-")


def compare_markdown(old: list[dict], new: list[dict], *, metric: str = "test_acc", old_best_of=OLD_BEST_OF) -> str:
    """Per (track, setting, data set) present in both: silr old -> new, the best-of baseline old -> new
    (``old_best_of`` for the old runs, the current definition for the new), and every method whose mean moved."""
    a, b = aggregate(old, metric), aggregate(new, metric)
    lines = ["| track | data set | setting | silr old | silr new | change | best-of old | best-of new | change | "
             "other methods that moved (old -> new) |", "|" + "---|" * 10]
    moved_silr = []
    for key in sorted(set(a) & set(b), key=lambda k: (k[0], k[1], k[2])):
        mo = {m: _mean_sd(v)[0] for m, v in a[key].items()}
        mn = {m: _mean_sd(v)[0] for m, v in b[key].items()}
        bo, bom = _best(mo, old_best_of)
        bn, bnm = _best(mn, BEST_OF)
        so, sn = mo.get("silr", np.nan), mn.get("silr", np.nan)
        moved_silr.append(sn - so)
        others = [f"{LABELS.get(m, m)} {mo[m]:.3f} -> {mn[m]:.3f}" for m in mn
                  if m != "silr" and m in mo and not np.isnan(mo[m]) and round(mo[m], 3) != round(mn[m], 3)]
        lines.append(f"| {key[0]} | {key[2]} | {key[1]} | {so:.3f} | {sn:.3f} | {sn - so:+.3f} | {bo:.3f} "
                     f"({LABELS.get(bom, bom)}) | {bn:.3f} ({LABELS.get(bnm, bnm)}) | {bn - bo:+.3f} | "
                     f"{'; '.join(others) or '-'} |")
    d = np.asarray(moved_silr, dtype=float)
    lines.append("")
    lines.append(f"{d.size} cells in both; silr's mean moved in {int(np.sum(np.round(np.abs(d), 3) > 0))} "
                 f"(mean change {np.nanmean(d):+.3f}, largest drop {np.nanmin(d):+.3f}, largest rise "
                 f"{np.nanmax(d):+.3f})." if d.size else "no cell in both")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--same-best-of", action="store_true",
                    help="old runs' best-of baseline by today's definition (both sides read the same inputs)")
    ap.add_argument("--note", default="", help="what the two sets of runs are (one sentence for the header)")
    args = ap.parse_args(argv)
    how = ("best-of = the best baseline of RESULTS.md on both sides" if args.same_best_of else
           "old best-of = best of (pseudo-labels, LR on 50 labels, balanced LR, cleanlab) as the old RESULTS.md "
           "defined it, new best-of = the best baseline of the new RESULTS.md. The old runs read different test "
           "inputs and some ran older engines (see NOTES.md)")
    md = ("# Stored runs, old -> new (mean test accuracy over seeds)\n\n_Made by `python -m silr.bench.compare "
          f"{args.old} {args.new}{' --same-best-of' if args.same_best_of else ''}`; {how}._"
          + (f" {args.note}" if args.note else "") + "\n\n"
          + compare_markdown(load_records(args.old), load_records(args.new),
                             old_best_of=BEST_OF if args.same_best_of else OLD_BEST_OF))
    if args.out:
        args.out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
