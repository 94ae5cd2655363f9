"""Aggregate benchmark runs into RESULTS.md: tables per track and per data-set group, what silr handed back,
silr against the best baseline, per-round plots. Every figure comes from the stored runs."""

from __future__ import annotations

import os
import platform
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from silr.bench.groups import GROUP_TITLES, group_of
from silr.bench.methods import METHODS, REFERENCE_METHODS, REGISTRY, SILR_FAMILY

__all__ = ["aggregate", "markdown_table", "best_of_markdown", "handed_back", "results_markdown", "plot_rounds",
           "machine_info", "missing_runs", "LABELS", "BEST_OF"]

LABELS = {k: v.label + ("" if v.reads_evidence else " †") for k, v in REGISTRY.items()}
#: The baselines silr is held against: every contender that is not a configuration of the refiner, plus PN on
#: the pseudo-labels (the refiner's head without the UU risk).
BEST_OF = tuple(m for m in METHODS if m not in REFERENCE_METHODS and (m not in SILR_FAMILY or m == "pn"))
COPY_NOTE = "= LR on 50 labels, features only"
TRACKS = (("llm", "Real-LLM track (Gemma-3-270M, 4-shot)"), ("noise", "Controlled-noise track"))


def _mean_sd(v: list) -> tuple[float, float]:
    a = np.asarray([x for x in v if x is not None], dtype=float)
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def aggregate(records: list[dict], metric: str = "test_acc") -> dict:
    """{(track, setting, dataset): {method: [values over seeds]}} for one metric."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        key = (r["track"], r["setting"], r["dataset"])
        for m, v in r["methods"].items():
            out[key][m].append(v.get(metric))
    return out


def handed_back(records: list[dict], method: str = "silr") -> dict:
    """{(track, setting, dataset): Counter of what ``method`` handed back over the seeds}."""
    out: dict = defaultdict(Counter)
    for r in records:
        m = r["methods"].get(method)
        if m is not None:
            src = "failed" if m.get("error") else (m.get("info") or {}).get("final_source", "?")
            out[(r["track"], r["setting"], r["dataset"])][src] += 1
    return out


def _hb_text(c: Counter) -> str:
    n = sum(c.values())
    return ", ".join(f"{k} {v}/{n}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def is_copy(c: Counter) -> bool:
    """silr handed back the 50-label probe in every seed: its figure is a copy of "LR on 50 labels, features
    only" (the same model), not a result of the refinement."""
    return bool(c) and set(c) == {"probe"}


def _fmt(m: float, sd: float) -> str:
    if np.isnan(m):
        return "failed"
    return f"{m:.3f} ± {sd:.3f}" if sd >= 0.0005 else f"{m:.3f}"


def _cell(values: list) -> str:
    """mean ± sd of a method's values over seeds; "-" when it did not run, "failed" / "(k failed)" for errors."""
    if not values:
        return "-"
    bad = sum(v is None for v in values)
    c = _fmt(*_mean_sd(values))
    return c if bad == 0 or bad == len(values) else f"{c} ({bad} failed)"


def _best(vals: dict, methods) -> tuple[list, bool]:
    """The contenders with the highest mean at the printed precision, and whether that best is strict."""
    r = {m: round(vals[m][0], 3) for m in methods if not np.isnan(vals[m][0])}
    if not r:
        return [], False
    top = max(r.values())
    best = [m for m in r if r[m] == top]
    return best, len(best) == 1


def markdown_table(records: list[dict], *, track: str, metric: str = "test_acc",
                   methods: tuple[str, ...] = METHODS) -> str:
    """One row per (data set, setting): mean ± sd over seeds; silr's "handed back" column next to it; bold only
    for a strict best contender, "(tie)" on each of several equal best; a cell of a silr configuration that
    handed back the 50-label probe in every seed says it is a copy."""
    recs = [r for r in records if r["track"] == track]
    agg, hb = aggregate(recs, metric), handed_back(recs)
    hbs = {m: handed_back(recs, m) for m in SILR_FAMILY}
    if not agg:
        return "_no runs_\n"
    present = [m for m in methods if any(m in v for v in agg.values())]
    head = ["data set", "setting", "seeds"]
    for m in present:
        head.append(LABELS.get(m, m))
        if m == "silr":
            head.append("handed back (silr)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(agg, key=lambda k: (k[1], k[2])):
        vals = {m: _mean_sd(agg[key].get(m, [])) for m in present}
        best, strict = _best(vals, [m for m in present if m not in REFERENCE_METHODS])
        n = max(len(v) for v in agg[key].values())
        cells = [key[2], key[1], str(n)]
        for m in present:
            c = _cell(agg[key].get(m, []))
            if m in hbs and is_copy(hbs[m].get(key, Counter())):
                c += f" ({COPY_NOTE})"
            if m in best:
                c = f"**{c}**" if strict else f"{c} (tie)"
            cells.append(c)
            if m == "silr":
                cells.append(_hb_text(hb.get(key, Counter())))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_of_markdown(records: list[dict], *, track: str = "llm", method: str = "silr") -> str:
    """silr against the best baseline of each row (the best of :data:`BEST_OF` at that row, test and corpus),
    with what silr handed back; copies of the 50-label probe are counted apart, never as wins."""
    recs = [r for r in records if r["track"] == track]
    if not recs:
        return "_no runs_\n"
    lines = ["| data set | setting | best baseline (test) | silr (test) | margin | best baseline (corpus) | "
             "silr (corpus) | margin | handed back (silr) |", "|" + "---|" * 9]
    test_agg, corp_agg, hb = aggregate(recs, "test_acc"), aggregate(recs, "corpus_acc"), handed_back(recs, method)
    margins, within, wins, copies, n = [], 0, 0, 0, 0
    for key in sorted(test_agg, key=lambda k: (k[1], k[2])):
        mt = {m: _mean_sd(v)[0] for m, v in test_agg[key].items()}
        mc = {m: _mean_sd(v)[0] for m, v in corp_agg.get(key, {}).items()}
        if np.isnan(mt.get(method, np.nan)):
            continue
        base = [b for b in BEST_OF if not np.isnan(mt.get(b, np.nan))]
        bt = max(base, key=lambda b: mt[b])
        bc = max(base, key=lambda b: mc.get(b, -1.0))
        dt, dc = round(mt[method] - mt[bt], 3), round(mc.get(method, np.nan) - mc.get(bc, np.nan), 3)
        copy = is_copy(hb.get(key, Counter()))
        n += 1
        copies += copy
        margins.append(dt)
        within += dt >= -0.01
        wins += dt > 0 and not copy
        note = f" ({COPY_NOTE})" if copy else ""
        lines.append(f"| {key[2]} | {key[1]} | {mt[bt]:.3f} ({LABELS.get(bt, bt)}) | {mt[method]:.3f}{note} | "
                     f"{dt:+.3f} | {mc.get(bc, np.nan):.3f} ({LABELS.get(bc, bc)}) | {mc.get(method, np.nan):.3f} | "
                     f"{dc:+.3f} | {_hb_text(hb.get(key, Counter()))} |")
    lines.append("")
    lines.append(f"{n} rows: silr strictly above the best baseline on the test split in {wins}; within 1 point "
                 f"(margin >= -0.010) in {within}; a copy of the 50-label probe in every seed in {copies} (never "
                 f"counted as a win); mean test margin {np.mean(margins):+.3f}.")
    return "\n".join(lines) + "\n"


def missing_runs(records: list[dict], expected: list[tuple]) -> list[tuple]:
    """The (track, setting, dataset, seed) in ``expected`` with no stored run."""
    have = {(r["track"], r["setting"], r["dataset"], r["seed"]) for r in records}
    return [e for e in expected if e not in have]


def round_curves(records: list[dict], method: str = "silr", metric: str = "test_acc") -> dict:
    """{(track, setting, dataset): list over seeds of per-round values} (round 0 excluded for test_acc)."""
    out: dict = defaultdict(list)
    for r in records:
        m = r["methods"].get(method)
        if not m or not m.get("rounds"):
            continue
        out[(r["track"], r["setting"], r["dataset"])].append([x.get(metric) for x in m["rounds"]])
    return out



def _mean_curve(curves: list[list]) -> list[float]:
    if not curves:
        return []
    L = max(len(c) for c in curves)
    arr = np.full((len(curves), L), np.nan)
    for i, c in enumerate(curves):
        for j, x in enumerate(c):
            if x is not None:
                arr[i, j] = x
        # a run that stopped early keeps its last labels
        last = next((arr[i, j] for j in range(L - 1, -1, -1) if not np.isnan(arr[i, j])), np.nan)
        for j in range(L):
            if np.isnan(arr[i, j]) and j >= len(c):
                arr[i, j] = last
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [float(x) for x in np.nanmean(arr, 0)]


def plot_rounds(records: list[dict], path: Path, *, track: str) -> Path | None:
    """Per-round test accuracy of silr / silr oracle / plain UU, with the pseudo-labels, balanced LR and the
    ceiling as horizontal lines: one panel per (data set, setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if r["track"] == track]
    keys = sorted({(r["setting"], r["dataset"]) for r in recs})
    if not keys:
        return None
    agg = aggregate(recs)
    n = len(keys)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, (setting, ds) in zip(axes.flat, keys):
        key = (track, setting, ds)
        for m, style in (("silr", "-o"), ("silr_oracle", "--s"), ("uu", ":^")):
            c = _mean_curve(round_curves(recs, m).get(key, []))
            if len(c) > 1:
                ax.plot(range(1, len(c)), c[1:], style, label=LABELS[m], ms=3)
        for m, col in (("llm", "grey"), ("lr_balanced", "tab:red"), ("ceiling", "black")):
            v = _mean_sd(agg[key].get(m, []))[0]
            if not np.isnan(v):
                ax.axhline(v, color=col, lw=0.8, ls="--", label=LABELS[m])
        ax.set_title(f"{ds} / {setting}", fontsize=8)
        ax.set_xlabel("round", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path



def machine_info() -> dict:
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import cleanlab

        cl = cleanlab.__version__
    except Exception:  # pragma: no cover
        cl = "n/a"
    from silr import __version__ as silr_version

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "sklearn": sklearn.__version__, "cleanlab": cl, "silr": silr_version, "platform": platform.platform()}




INPUTS = {
    "llm": ("Inputs on the test split: every method is given the features and the LLM's score of each test row. "
            "The baselines read the score as one more feature column (standardised by the corpus scores); silr, "
            "silr oracle priors and plain UU read it through the refiner's stack, and each is scored with what it "
            "handed back applied to the test features and scores; † = given the score, reads the features only. "
            "The pseudo-labels are the LLM's scores cut at the threshold that maximises accuracy on the seed's "
            "50 labeled rows (the same rows the refinement uses). Gold behind each cell: the 50 labeled rows plus "
            "the 8 gold-labeled few-shot rows of the prompt's fixed pool, outside the budget (58 in all)."),
    "noise": ("Inputs on the test split: every method is given the features and the pseudo-label of each test row "
              "(simulated noise of the same kind as the corpus's, independent of the features given the gold "
              "label: the ideal case for a stack). The baselines read it as one more feature column; silr, silr "
              "oracle priors and plain UU read it through the refiner's stack; † = given it, reads the features "
              "only."),
}


def results_markdown(records: list[dict], *, title: str = "silr benchmark", config: dict | None = None,
                     plots: dict | None = None, notes: str = "", expected: list[tuple] | None = None) -> str:
    mi = machine_info()
    cfg = config or {}
    engines = Counter(((r.get("engine") or {}).get("commit") or "unknown") for r in records)
    dirty = sum(bool((r.get("engine") or {}).get("dirty")) for r in records)
    eng = ", ".join(f"`{c}` ({n} runs)" for c, n in engines.most_common())
    if len(engines) > 1 or dirty:
        eng += f" — MIXED OR UNCOMMITTED ENGINE ({dirty} runs from a modified tree): do not quote these figures"
    groups = defaultdict(set)
    for r in records:
        groups[group_of(r["dataset"])].add(r["dataset"])
    parts = [f"# {title}\n", "_Regenerated from the stored runs by `silr.bench`; do not edit by hand._\n\n"]
    parts.append(
        f"- Machine: {mi['cpu']}, {mi['cores']} cores ({mi['platform']})\n"
        f"- Versions: silr {mi['silr']}, Python {mi['python']}, torch {mi['torch']}, scikit-learn {mi['sklearn']}, "
        f"cleanlab {mi['cleanlab']}\n"
        f"- Engine: every stored run records the git commit of the `silr` source it imported: {eng}\n"
        f"- Data sets: tuning group {', '.join(sorted(groups['tuning'])) or '-'}; held-out group "
        f"{', '.join(sorted(groups['held_out'])) or '-'} (`silr.bench.groups`)\n"
        f"- Labeled budget: {cfg.get('n_labeled', 50)} corpus rows per seed, one uniform draw (no redraw); seeds: "
        f"{cfg.get('seeds')}; corpus cap {cfg.get('max_corpus')} rows (stratified, fixed seed), test cap "
        f"{cfg.get('max_test')}"
        + (f" (real-LLM track: {cfg['llm_max_corpus']} / {cfg['llm_max_test']})" if "llm_max_corpus" in cfg else "")
        + "\n"
        f"- silr parameters: `{cfg.get('silr_params') or 'refiner defaults'}` (otherwise the refiner's defaults)\n"
    )
    bb = sorted({(r["dataset"], r["setting"], r["backbone"]) for r in records})
    parts.append("- Features: " + ", ".join(f"{d} {s}: {b}" for d, s, b in bb) + "\n")
    parts.append("\nMethods marked * read the corpus gold (references, not contenders); † = given the evidence "
                 "column, reads the features only. Cells: accuracy, mean ± sd over seeds; bold = the strictly best "
                 "contender of the row, \"(tie)\" = several contenders share the best mean; \"handed back\" = what "
                 f"silr's selection handed back in each seed; \"({COPY_NOTE})\" = that configuration of the refiner "
                 "(silr, oracle priors or plain UU) handed back the probe on the 50 labeled rows in every seed, "
                 "which is the same model as that column: a copy, not a result of the refinement.\n")
    parts.append("\nMethods (`silr.bench.methods.REGISTRY`):\n" + "".join(
        f"- {LABELS[m]}: {REGISTRY[m].description}\n" for m in METHODS if any(m in r["methods"] for r in records)))
    if notes:
        parts.append("\n" + notes.strip() + "\n")
    for track, title_t in TRACKS:
        tr = [r for r in records if r["track"] == track]
        if not tr:
            continue
        parts.append(f"\n## {title_t}\n\n{INPUTS[track]}\n")
        for g in ("tuning", "held_out"):
            gr = [r for r in tr if group_of(r["dataset"]) == g]
            if not gr:
                continue
            parts.append(f"\n### {GROUP_TITLES[g]}\n\n#### Test accuracy\n\n")
            parts.append(markdown_table(gr, track=track))
            parts.append("\n#### Refined corpus labels (accuracy against the hidden gold)\n\n")
            parts.append(markdown_table(gr, track=track, metric="corpus_acc"))
            parts.append("\n#### silr against the best baseline of each row\n\n")
            parts.append(best_of_markdown(gr, track=track))
        miss = missing_runs(records, [e for e in (expected or []) if e[0] == track])
        if miss:
            by = defaultdict(list)
            for _, s, d, seed in miss:
                by[(d, s)].append(seed)
            parts.append(f"\nMissing runs ({len(miss)} of {sum(e[0] == track for e in expected)} planned; not in "
                         "any table above): " + "; ".join(f"{d} {s} seeds {v}" for (d, s), v in sorted(by.items()))
                         + ".\n")
        if plots and plots.get(track):
            parts.append(f"\nPer-round test accuracy of the refined classifier: ![{track}]({plots[track]})\n")
    return "".join(parts)
