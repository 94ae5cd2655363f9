"""Self-contained HTML report for a SILR refinement run.

``write_report(out_dir)`` reads ``out_dir/rounds.json`` and ``out_dir/labels.csv``
(written by a refinement run), draws a handful of diagnostic plots with
matplotlib's Agg canvas and writes:

* ``out_dir/report.html`` -- a single self-contained file: inline CSS, every
  figure embedded as a base64 ``data:image/png`` URI, no scripts, no external
  assets (it can be mailed around or opened offline);
* ``out_dir/plots/*.png`` -- the same figures as standalone PNG files
  (``priors.png``, ``accuracy.png``, ``scores.png``, ``loss.png`` and, when gold
  labels are available, ``confusion.png``).

All files are written atomically (temporary file in the same folder, then
``os.replace``). All text that comes from the run (backbone names, parameters,
file names, stop/selection reasons, ...) is HTML-escaped.

Figures are drawn on ``matplotlib.figure.Figure`` + ``FigureCanvasAgg``
directly, so importing or using this module never changes the global pyplot
backend of the caller (notebooks keep their inline backend).
"""


from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from silr.io import atomic_write_bytes
from silr.report.format import _DASH, _esc, _fmt, _fmt_int, _num
from silr.report.html import _CSS, _figure, _kv_table, _records_table, _round_table, _backbone_name
from silr.report.metrics import _prepare_gold, gold_metrics
from silr.report.plots import _plot_accuracy, _plot_confusion, _plot_loss, _plot_priors, _plot_scores

__all__ = ["write_report", "PLOT_FILES"]

#: Plot file names written under ``out_dir/plots`` (confusion only with gold).
PLOT_FILES = ("priors.png", "accuracy.png", "scores.png", "confusion.png", "loss.png")


def write_report(
    out_dir: str | os.PathLike,
    *,
    rounds: dict | None = None,
    labels: pd.DataFrame | None = None,
    gold: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/plots/*.png``; return the HTML path.

    ``rounds`` / ``labels`` default to ``out_dir/rounds.json`` / ``out_dir/labels.csv``
    (``rounds.json`` is required, ``labels.csv`` optional). ``gold`` is an optional
    0/1 array aligned with the rows of ``labels`` (NaN = unknown); with it the
    report adds the true accuracy of every round's labels, a score histogram by
    gold class and a confusion matrix of the final labels. Without ``gold`` the
    run's own ``evaluation`` block (if any) is used for the gold figures.
    """
    out = Path(out_dir)
    if rounds is None:
        rounds_path = out / "rounds.json"
        if not rounds_path.is_file():
            raise FileNotFoundError(f"{rounds_path} not found (pass rounds=... explicitly)")
        rounds = json.loads(rounds_path.read_text(encoding="utf-8"))
    if not isinstance(rounds, Mapping):
        raise TypeError("rounds must be a dict (the content of rounds.json)")
    if labels is None:
        labels_path = out / "labels.csv"
        labels = pd.read_csv(labels_path) if labels_path.is_file() else None

    round_list = [r for r in (rounds.get("rounds") or []) if isinstance(r, Mapping)]
    params = rounds.get("params") or {}
    if not isinstance(params, Mapping):
        params = {}
    backbone = rounds.get("backbone")
    evaluation = rounds.get("evaluation") if isinstance(rounds.get("evaluation"), Mapping) else {}
    fr = _num(rounds.get("final_round"))
    final_round = int(fr) if fr is not None else None

    g = _prepare_gold(gold, None if labels is None else len(labels))
    if g is not None and labels is None:
        raise ValueError("gold was given but there is no labels.csv to compare it with")

    gold_acc, final_gold_acc, final_f1, cm, gold_source = gold_metrics(labels, g, evaluation, final_round)

    # ---- plots ----------------------------------------------------------------
    figs: list[tuple[str, bytes, str, str]] = [
        ("priors.png", _plot_priors(round_list, final_round),
         "Estimated class prior \u03c0 and pseudo-set purities \u03b8\u209a / \u03b8\u2099 per round "
         "(error bars: intervals from the labeled sample).", ""),
        ("accuracy.png", _plot_accuracy(round_list, gold_acc, final_round),
         "Estimated accuracy of each round's labels (with interval)"
         + ("; true accuracy against gold labels." if gold_acc else "."), ""),
        ("scores.png", _plot_scores(labels, g),
         "Histogram of the final classifier's scores, split by the round-0 pseudo-label (P\u0303 vs \u00d1)"
         + (" and by gold class." if g is not None else "."), "wide"),
    ]
    if cm is not None:
        figs.append(("confusion.png", _plot_confusion(cm),
                     "Confusion matrix of the final labels against gold.", "narrow"))
    figs.append(("loss.png", _plot_loss(round_list),
                 "Training and validation loss per round (\u2605 marks the selected epoch).", ""))

    plots_dir = out / "plots"
    for name, png, _, _ in figs:
        atomic_write_bytes(plots_dir / name, png)

    # ---- html -----------------------------------------------------------------
    n_rounds_done = sum(1 for r in round_list if r.get("source") != "pseudo-labels" and _num(r.get("round")) != 0)
    summary_items = [
        ("Corpus size", _fmt_int(rounds.get("n_corpus") if rounds.get("n_corpus") is not None
                                 else (len(labels) if labels is not None else None))),
        ("Labeled budget", _fmt_int(rounds.get("n_labeled"))),
        ("Backbone", _backbone_name(backbone)),
        ("Learner", str((rounds.get("learner") or {}).get("kind") or _DASH)),
        ("Risk", str(params.get("risk") or _DASH)),
        ("Rounds run", f"{n_rounds_done} (of {_fmt_int(params.get('rounds'))} planned)"
         if params.get("rounds") is not None else str(n_rounds_done)),
        ("Final round", _DASH if final_round is None else str(final_round)),
        ("Final labels", str(rounds.get("final_source") or _DASH)),  # a stack/probe is not round K's labels
        ("Stop reason", str(rounds.get("stop_reason") or _DASH)),
    ]
    if final_gold_acc is not None:
        summary_items.append(("Final accuracy vs gold", _fmt(final_gold_acc)))
    if final_f1 is not None:
        summary_items.append(("Final F1 vs gold", _fmt(final_f1)))
    if rounds.get("silr_version"):
        summary_items.append(("silr version", str(rounds["silr_version"])))
    summary_html = "<dl class=\"summary\">" + "".join(
        f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in summary_items) + "</dl>"
    selection = rounds.get("selection")
    if selection:
        summary_html += f"<p class=\"reason\"><b>Selection:</b> {_esc(selection)}</p>"

    page_title = title or f"SILR refinement report \u2014 {out.resolve().name}"
    sub = "Self-Iterative Label Refinement: LLM pseudo-labels refined with robust UU learning."

    sections = [f"<h1>{_esc(page_title)}</h1><p class=\"sub\">{_esc(sub)}</p>", summary_html]
    sections.append("<h2>Rounds</h2>")
    if round_list:
        handed_back_round = final_round if rounds.get("final_source") in (None, "refined", "llm") else None
        sections.append(_round_table(round_list, gold_acc, handed_back_round))  # "selected": its labels are final
        note = ("Estimates and intervals come from the labeled sample; "
                "\u03b8\u209a / \u03b8\u2099 are the shares of true positives in the round's "
                "pseudo-positive / pseudo-negative sets.")
        if gold_acc:
            note += f" Gold accuracy: {gold_source}."
        sections.append(f"<p class=\"note\">{_esc(note)}</p>")
    else:
        sections.append("<p class=\"note\">No rounds recorded.</p>")

    eval_tables = []
    for key, label in (("per_round", "Labels vs gold"), ("test_per_round", "Held-out test set")):
        t = _records_table(evaluation.get(key) or []) if evaluation else ""
        if t:
            eval_tables.append(f"<h3>{_esc(label)}</h3>{t}")
    if eval_tables:
        gold_name = evaluation.get("gold")
        head = "<h2>Evaluation</h2>"
        if gold_name:
            head += f"<p class=\"note\">Gold labels: {_esc(gold_name)}</p>"
        sections.append(head + "".join(eval_tables))

    sections.append("<h2>Figures</h2><div class=\"grid\">"
                    + "".join(_figure(n, b, c, cls) for n, b, c, cls in figs) + "</div>")

    details = []
    if isinstance(backbone, Mapping) and backbone:
        details.append(f"<details><summary>Backbone</summary>{_kv_table(backbone)}</details>")
    if params:
        details.append(f"<details><summary>Parameters</summary>{_kv_table(params)}</details>")
    if evaluation:
        ev = {k: v for k, v in evaluation.items() if k not in ("per_round", "test_per_round", "confusion")}
        if ev:
            details.append(f"<details><summary>Evaluation</summary>{_kv_table(ev)}</details>")
    if details:
        sections.append("<h2>Run configuration</h2>" + "".join(details))
    sections.append("<footer>Generated by silr.report. Self-contained file: all figures are embedded; "
                    "the same PNGs are in the plots/ folder next to it.</footer>")

    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{_esc(page_title)}</title><style>{_CSS}</style></head>"
           f"<body><main>{''.join(sections)}</main></body></html>\n")
    report_path = out / "report.html"
    atomic_write_bytes(report_path, doc.encode("utf-8"))
    return report_path
