"""benchmarks/KCLASS.md tables from the stored K-class runs (benchmarks/results/kclass/*.json)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "results" / "kclass"
METHODS = ("llm", "lr_labeled", "lr_balanced", "cleanlab", "ovr_binary", "silr_k")
BASELINES = METHODS[:-1]
HEAD = {"llm": "LLM labels", "lr_labeled": "LR on labeled", "lr_balanced": "balanced LR", "cleanlab": "cleanlab",
        "ovr_binary": "one-vs-rest (binary silr)", "silr_k": "silr K-class"}
#: the groups of data sets (benchmarks/kclass_bench.py): tuning sets (looked at while choosing the defaults),
#: held out but seen before (results shown in an earlier version of this file, never tuned on), fresh held out
TUNING = {"slo_opinion", "newsgroups6", "reuters_r8", "amazon3", "tweets3", "movies3", "nyt3", "reuters6x"}
SEEN = {"newsgroups6b", "newsgroups8c", "rt3", "debates3", "trec6", "trecnum", "reuters6y", "trecenty", "trecdesc"}
FRESH = {"trecloc", "reuters6z"}
#: the third version's fresh sets (tuning sets from the fourth version), the fourth version's (seen from the
#: fifth) and the fifth version's (seen from the sixth): shown on their own lines for comparison
FRESH_V3 = {"tweets3", "movies3", "nyt3", "reuters6x"}
FRESH_V4 = {"rt3", "debates3"}
FRESH_V5 = {"trec6"}
FRESH_V6 = {"trecnum", "reuters6y"}
FRESH_V7 = {"trecenty", "trecdesc"}
GROUP_TAG = {**{t: " (tuning)" for t in TUNING}, **{t: " (seen)" for t in SEEN}, **{t: " (fresh)" for t in FRESH}}


def load(pending: bool = False):
    """The stored runs with a silr K-class figure (``pending``: only those without one, run with --skip-silr)."""
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    return [r for r in runs if bool(r.get("silr_k")) != pending]


def cells(runs, metric):
    by = defaultdict(list)
    for r in runs:
        by[(r["setting"], r["task"], r["budget"])].append(r)
    out = []
    for (setting, task, budget), rs in sorted(by.items()):
        means = {m: float(np.mean([r[m][metric] for r in rs])) for m in METHODS}
        best_b = max(BASELINES, key=lambda m: means[m])
        sources = defaultdict(int)
        for r in rs:
            sources[r["silr_k"]["source"]] += 1
        # a baseline whose figure silr K-class matches in every seed (a copy, e.g. the probe = LR on the labeled rows)
        same = [m for m in BASELINES if all(abs(r["silr_k"][metric] - r[m][metric]) < 1e-12 for r in rs)]
        out.append(dict(setting=setting, task=task, budget=budget, K=rs[0]["K"], n=len(rs), means=means, same=same,
                        llm_acc=float(np.mean([r["llm_corpus_acc"] for r in rs])), best=best_b,
                        margin=means["silr_k"] - means[best_b], sources=dict(sources),
                        seeds=sorted(r["seed"] for r in rs), n_corpus=rs[0]["n_corpus"], n_test=rs[0]["n_test"]))
    return out


def table(cs, metric_name) -> list[str]:
    lines = [f"| setting | data set (K) | labels | " + " | ".join(HEAD[m] for m in METHODS)
             + " | margin vs best baseline | silr hand-back (seeds) |", "|---" * (len(METHODS) + 5) + "|"]
    for c in cs:
        vals = c["means"]
        top = max(vals.values())
        strict = sum(1 for v in vals.values() if abs(v - top) < 1e-12) == 1
        cellv = []
        copy = next(iter(c["same"]), None)
        for m in METHODS:
            s = f"{vals[m]:.3f}"
            s = f"**{s}**" if strict and abs(vals[m] - top) < 1e-12 else s
            if m == "silr_k" and copy:
                s += f" (= {HEAD[copy]} †)"
            cellv.append(s)
        tag = GROUP_TAG.get(c["task"], "")
        src = ", ".join(f"{k} {v}" for k, v in sorted(c["sources"].items()))
        lines.append(f"| {c['setting']} | {c['task']}{tag} ({c['K']}) | {c['budget']} | " + " | ".join(cellv)
                     + f" | {c['margin']:+.3f} ({HEAD[c['best']]}) | {src} |")
    return lines


def _target_line(cs, tasks, what) -> str:
    held = [c for c in cs if c["task"] in tasks and 0.5 <= c["llm_acc"] <= 0.8]
    if not held:
        return f"{what}: no cell with LLM accuracy in [0.5, 0.8] yet."
    m = np.array([c["margin"] for c in held])
    worst = min(held, key=lambda c: c["margin"])
    return (f"{what} ({', '.join(sorted(tasks))}), cells with LLM corpus accuracy in [0.5, 0.8]: {len(held)}; mean margin "
            f"of silr K-class over the best baseline of each cell **{m.mean():+.3f}**; cells where it is above: "
            f"{int((m > 0).sum())}; worst {worst['margin']:+.3f} ({worst['setting']} {worst['task']} {worst['budget']} "
            f"labels, best baseline {HEAD[worst['best']]}); cells more than 1 point below: {int((m < -0.01).sum())}.")


def target(cs) -> list[str]:
    return ["- " + _target_line(cs, FRESH, "**Fresh held-out sets** (never looked at before these runs; the target)"),
            "- " + _target_line(cs, FRESH | SEEN, "Fresh and seen held-out sets (not tuned on)"),
            "- " + _target_line(cs, TUNING, "Tuning sets, for reference (the defaults were chosen on them: optimistic)"),
            "- " + _target_line(cs, FRESH_V3,
                                "Of them the third version's fresh sets (tuned on from the fourth version)"),
            "- " + _target_line(cs, FRESH_V4, "The fourth version's fresh sets (seen from the fifth version)"),
            "- " + _target_line(cs, FRESH_V5, "The fifth version's fresh set (seen from the sixth version)"),
            "- " + _target_line(cs, FRESH_V6, "The sixth version's fresh sets (seen from the seventh version)"),
            "- " + _target_line(cs, FRESH_V7, "The seventh version's fresh sets (seen from the eighth version)")]


def write_table(path: Path = ROOT / "KCLASS.md") -> str:
    runs, n_pending = load(), len(load(pending=True))
    commits = sorted({r.get("commit", "?") for r in runs})
    silr_commits = sorted({r["silr_k"].get("commit", "?") for r in runs})
    cs_c, cs_t = cells(runs, "corpus_acc"), cells(runs, "test_acc")
    cs_u = cells(runs, "unlabeled_acc") if all("unlabeled_acc" in r[m] for r in runs for m in METHODS) else None
    parts = (["# K-class refinement benchmark (issue 18)", "",
             "Generated by `python benchmarks/kclass_bench.py --table` from benchmarks/results/kclass/ "
             f"({len(runs)} runs; baselines from commits {', '.join(commits)}; silr K-class from engine "
             f"{', '.join(silr_commits)}"
             + (f"; {n_pending} more runs wait for silr K-class and are not shown" if n_pending else "")
             + "). Mean over seeds "
             f"{sorted({r['seed'] for r in runs})}; bold = strict best of the row.", "",
             "## Corpus accuracy of the handed-back labels, all corpus rows", "",
             "Every corpus row, the labeled rows included. A method that memorises the labeled rows (the probe, the "
             "stacks that read it: LR on labeled, one-vs-rest's binary refiners, silr's probe) is right on them by "
             "construction, up to 12.5% of a Gemma subsample with 100 labels; the next table leaves them out.", ""]
             + table(cs_c, "corpus") + ([
             "", "## Corpus accuracy on the rows outside the labeled budget", "",
             "The same handed-back labels scored only on the corpus rows whose gold label no method was given: what "
             "each method inferred.", ""] + table(cs_u, "unlabeled") if cs_u else []) + [
             "", "## Test accuracy (predict on held-out rows)", ""] + table(cs_t, "test") + [
             "", "† the same figure as that baseline in every seed (a copy: e.g. the probe is the same logistic "
             "regression on the labeled rows, and the LLM's labels handed back are that baseline's); a mean that only "
             "happens to equal a baseline's is not marked.", "",
             "## Against the target (corpus accuracy, all rows)", ""] + target(cs_c) + [""]
             + (["## Against the target (corpus accuracy outside the labeled budget)", ""] + target(cs_u) + [""]
                if cs_u else [])
             + ["## The same lines on test accuracy (predict on held-out rows)", ""] + target(cs_t) + [""])
    text = "\n".join(parts)
    from silr.io import atomic_write_text

    prose = (ROOT / "KCLASS_NOTES.md").read_text() if (ROOT / "KCLASS_NOTES.md").exists() else ""
    atomic_write_text(path, text + ("\n" + prose if prose else ""))
    _results_section(text)
    return text


BEGIN, END = "<!-- kclass:begin -->", "<!-- kclass:end -->"


def _results_section(text: str) -> None:
    """The K-class tables as the last section of benchmarks/RESULTS.md (between markers; replaced on rerun)."""
    from silr.io import atomic_write_text

    p = ROOT / "RESULTS.md"
    old = p.read_text() if p.exists() else ""
    body = text.replace("# K-class refinement benchmark (issue 18)", "## K-class track (issue 18; from benchmarks/KCLASS.md)", 1)
    body = body.replace("\n## ", "\n### ").replace("\n### K-class track", "\n## K-class track")
    block = f"{BEGIN}\n{body}\nSetup, methods and caveats: benchmarks/KCLASS.md.\n{END}\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    atomic_write_text(p, new)


if __name__ == "__main__":
    write_table()
