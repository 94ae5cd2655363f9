"""The K-class run report: T per round (with intervals) and confusion matrices against the labeled rows.

The run reads gold labels only for its labeled rows, so the report's confusion matrices are on those rows
(``labeled rows: gold x LLM label`` and ``labeled rows: gold x handed-back label``). Scoring against held-out
gold is the separate ``silr kclass evaluate`` step (:func:`evaluation`).
"""

from __future__ import annotations

import html

import numpy as np

__all__ = ["confusion", "run_summary", "report_markdown", "report_html", "evaluation"]


def confusion(y_true_codes, y_pred_codes, K: int) -> np.ndarray:
    """``M[i, j]`` = rows of true class ``i`` labeled ``j``."""
    M = np.zeros((K, K), dtype=np.int64)
    np.add.at(M, (np.asarray(y_true_codes, dtype=np.int64), np.asarray(y_pred_codes, dtype=np.int64)), 1)
    return M


def run_summary(model, lab_idx, y_lab_codes) -> dict:
    """A JSON-able description of a fitted K-class refiner (the body of ``rounds.json``)."""
    K = len(model.classes_)
    code = {c: i for i, c in enumerate(model.classes_.tolist())}
    final_lab = [code[c] for c in np.asarray(model.transduction_)[lab_idx].tolist()]
    return {
        "classes": [str(c) for c in model.classes_],
        "n_rounds": int(model.n_rounds_),
        "final_source": str(model.final_source_),
        "final_round": int(model.final_round_),
        "selection": model.selection_reason_,
        "stop": str(model.stop_reason_),
        "stop_reason": model.stop_detail_,
        "candidates": model.candidates_,
        "rounds": model.rounds_,
        "round0": str(getattr(model, "round0_labeled_", "as given")),
        "labeled_confusion_llm": confusion(y_lab_codes, model.labels_[0][lab_idx], K).tolist(),
        "labeled_confusion_final": confusion(y_lab_codes, final_lab, K).tolist(),
        "n_labeled": int(len(lab_idx)),
    }


def _matrix_md(M, rows, cols, fmt) -> list[str]:
    out = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in zip(rows, M):
        out.append(f"| {name} | " + " | ".join(fmt(v) for v in row) + " |")
    return out


def report_markdown(summary: dict) -> str:
    cls = summary["classes"]
    what = ""
    if summary["final_source"] == "llm" and str(summary.get("round0", "")).startswith("calibrated"):
        what = ": the LLM's scores calibrated on the labeled rows, not the LLM's own labels"
    lines = [f"# silr K-class run ({len(cls)} classes)", "",
             f"Handed back: **{summary['final_source']}** (round {summary['final_round']}{what}). "
             f"{summary['selection']}",
             "", f"Stop: {summary['stop_reason']}", ""]
    left = summary.get("rows_left_out") or {}
    if left.get("count"):
        lines += [f"Left out: {left['count']} corpus rows with {left['why']}; they are not in labels.csv.", ""]
    for rec in summary["rounds"]:
        if "T" not in rec:
            continue
        lo, hi = rec.get("accuracy_interval", [np.nan, np.nan])
        what = f" ({rec['source']})" if rec["round"] == 0 and rec.get("source", "pseudo-labels") != "pseudo-labels" else ""
        lines += [f"## Round {rec['round']}{what}: T[k, c] = P(gold c | label k)", "",
                  f"Estimated accuracy {rec['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]; condition number "
                  f"{rec['condition']:.1f}; label shares " + ", ".join(f"{c} {r:.3f}" for c, r in zip(cls, rec["rates"]))
                  + (f"; changed {rec['n_changed']} rows" if rec.get("n_changed") is not None else ""), ""]
        T, L, H = (np.asarray(rec[k]) for k in ("T", "T_low", "T_high"))
        cells = [[f"{T[i, j]:.2f} [{L[i, j]:.2f}, {H[i, j]:.2f}]" for j in range(len(cls))] for i in range(len(cls))]
        lines += _matrix_md(cells, [f"label {c}" for c in cls], cls, str) + [""]
        for note in rec.get("notes", []) + ([rec["note"]] if rec.get("note") else []):
            lines += [f"- {note}"]
        lines += [""]
    first = ("round-0 labels (the LLM's scores calibrated on these rows, so in sample here)"
             if str(summary.get("round0", "")).startswith("calibrated") else "LLM labels")
    for key, title in (("labeled_confusion_llm", first), ("labeled_confusion_final", "handed-back labels")):
        lines += [f"## Confusion on the {summary['n_labeled']} labeled rows: gold (rows) x {title} (columns)", ""]
        lines += _matrix_md(summary[key], [f"gold {c}" for c in cls], cls, str) + [""]
    lines += ["Held-out gold is not read by the run; score it with `silr evaluate RUN --gold FILE`.", ""]
    return "\n".join(lines)


def report_html(summary: dict) -> str:
    """The markdown report as a minimal self-contained HTML page (pre-formatted tables)."""
    body = html.escape(report_markdown(summary))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>silr K-class run</title></head>"
            f"<body><pre style='font-family:monospace'>{body}</pre></body></html>")


def evaluation(classes, labels_per_round, final_codes, gold_codes) -> dict:
    """Evaluation against held-out gold (a separate step): accuracy per round and of the handed-back labels, and
    the final confusion matrix. ``gold_codes`` is -1 where no gold label is known and K for a gold class the run
    does not have (wrong in every figure; not in the K x K confusion matrix)."""
    g = np.asarray(gold_codes)
    m = g >= 0
    K = len(classes)
    mk = m & (g < K)
    return {
        "n": int(m.sum()),
        # round 0 here is the LLM's own labels (labels.csv llm_label); a run whose round 0 was calibrated on the
        # labeled rows scores that one as round0_calibrated_accuracy (evaluate_kclass)
        "per_round": [{"round": r, "labels": "llm_label" if r == 0 else f"round_{r}",
                       "accuracy": float(np.mean(np.asarray(L)[m] == g[m]))} for r, L in enumerate(labels_per_round)],
        "final_accuracy": float(np.mean(np.asarray(final_codes)[m] == g[m])),
        "confusion_final": confusion(g[mk], np.asarray(final_codes)[mk], K).tolist(),
        "classes": [str(c) for c in classes],
    }
