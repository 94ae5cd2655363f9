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

import base64
import html
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["write_report", "PLOT_FILES"]

#: Plot file names written under ``out_dir/plots`` (confusion only with gold).
PLOT_FILES = ("priors.png", "accuracy.png", "scores.png", "confusion.png", "loss.png")

_DASH = "\u2014"  # shown for missing values
_ROUND_COL = re.compile(r"^round_(\d+)$")


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #
def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(x: Any) -> float | None:
    """Float value of ``x`` or None when missing / not a finite number."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return _DASH if v is None else f"{v:.{digits}f}"


def _fmt_int(x: Any) -> str:
    v = _num(x)
    if v is None:
        return _DASH
    return str(int(round(v))) if float(v).is_integer() else f"{v:.3f}"


def _interval(iv: Any) -> tuple[float, float] | None:
    if not isinstance(iv, (list, tuple)) or len(iv) != 2:
        return None
    lo, hi = _num(iv[0]), _num(iv[1])
    if lo is None or hi is None:
        return None
    return (min(lo, hi), max(lo, hi))


def _fmt_interval(iv: Any) -> str:
    t = _interval(iv)
    return "" if t is None else f"[{t[0]:.3f}, {t[1]:.3f}]"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _round_columns(labels: pd.DataFrame) -> list[tuple[int, str]]:
    cols = []
    for c in labels.columns:
        m = _ROUND_COL.match(str(c))
        if m:
            cols.append((int(m.group(1)), str(c)))
    return sorted(cols)


def _as_binary(a: Any) -> np.ndarray:
    """Float array with 0/1 values and NaN for missing entries."""
    arr = pd.to_numeric(pd.Series(np.asarray(a).ravel()), errors="coerce").to_numpy(dtype=float)
    return arr


def _prepare_gold(gold: Any, n: int | None) -> np.ndarray | None:
    if gold is None:
        return None
    if isinstance(gold, (pd.Series, pd.DataFrame)):
        gold = gold.to_numpy()
    g = _as_binary(gold)
    if n is not None and len(g) != n:
        raise ValueError(f"gold has {len(g)} entries but labels.csv has {n} rows")
    ok = np.isfinite(g)
    if not np.all(np.isin(g[ok], (0.0, 1.0))):
        raise ValueError("gold labels must be 0/1 (NaN allowed for unknown rows)")
    return g


def _accuracy(pred: Any, gold: np.ndarray) -> float | None:
    p = _as_binary(pred)
    ok = np.isfinite(p) & np.isfinite(gold)
    if not ok.any():
        return None
    return float(np.mean(p[ok] == gold[ok]))


def _f1(pred: Any, gold: np.ndarray) -> float | None:
    p = _as_binary(pred)
    ok = np.isfinite(p) & np.isfinite(gold)
    if not ok.any():
        return None
    p, g = p[ok], gold[ok]
    tp = float(np.sum((p == 1) & (g == 1)))
    fp = float(np.sum((p == 1) & (g == 0)))
    fn = float(np.sum((p == 0) & (g == 1)))
    denom = 2 * tp + fp + fn
    return None if denom == 0 else 2 * tp / denom


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #
_COLORS = {
    "pi": "#4c72b0",
    "theta_p": "#55a868",
    "theta_n": "#c44e52",
    "est": "#4c72b0",
    "gold": "#dd8452",
    "P": "#55a868",
    "N": "#c44e52",
}


def _new_figure(width: float = 6.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", bbox_inches="tight", pad_inches=0.12)
    return buf.getvalue()


def _style_axes(ax) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            fontsize=11, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _round_numbers(rounds: list[dict]) -> list[int]:
    out = []
    for i, r in enumerate(rounds):
        v = _num(r.get("round"))
        out.append(int(v) if v is not None else i)
    return out


def _legend_below(fig, ax, ncol: int = 2, fontsize: float = 9) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=fontsize, frameon=False)


def _set_round_ticks(ax, xs: Sequence[int]) -> None:
    if xs:
        ax.set_xticks(list(xs))
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_xlabel("round")


def _mark_final(ax, final_round: int | None) -> None:
    if final_round is not None:
        ax.axvline(final_round, color="#888888", linestyle=":", linewidth=1.2,
                   label=f"selected round ({final_round})")


def _errorbar_series(ax, xs, vals, ivs, *, offset, color, label, marker="o"):
    pts = [(x + offset, v, _interval(iv)) for x, v, iv in zip(xs, vals, ivs) if _num(v) is not None]
    if not pts:
        return False
    px = np.array([p[0] for p in pts], dtype=float)
    py = np.array([float(p[1]) for p in pts], dtype=float)
    lo = np.array([py[i] - p[2][0] if p[2] else 0.0 for i, p in enumerate(pts)])
    hi = np.array([p[2][1] - py[i] if p[2] else 0.0 for i, p in enumerate(pts)])
    ax.errorbar(px, py, yerr=np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)]),
                color=color, marker=marker, capsize=4, linewidth=1.6, markersize=6, label=label)
    return True


def _plot_priors(rounds: list[dict], final_round: int | None) -> bytes:
    fig = _new_figure()
    ax = fig.add_subplot()
    xs = _round_numbers(rounds)
    drawn = False
    specs = (("pi", "\u03c0 (class prior)", -0.12), ("theta_p", "\u03b8\u209a = P(y=1 | P\u0303)", 0.0),
             ("theta_n", "\u03b8\u2099 = P(y=1 | \u00d1)", 0.12))
    for key, label, off in specs:
        vals = [r.get(key) for r in rounds]
        ivs = [(r.get("intervals") or {}).get(key) for r in rounds]
        drawn |= _errorbar_series(ax, xs, vals, ivs, offset=off, color=_COLORS[key], label=label)
    if drawn:
        _mark_final(ax, final_round)
        _set_round_ticks(ax, xs)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("estimate (with interval)")
        _legend_below(fig, ax, ncol=2)
        _style_axes(ax)
    else:
        _placeholder(ax, "no prior estimates recorded")
    ax.set_title("Prior estimates per round")
    return _png_bytes(fig)


def _plot_accuracy(rounds: list[dict], gold_acc: dict[int, float], final_round: int | None) -> bytes:
    fig = _new_figure()
    ax = fig.add_subplot()
    xs = _round_numbers(rounds)
    drawn = _errorbar_series(ax, xs, [r.get("accuracy") for r in rounds],
                             [(r.get("intervals") or {}).get("accuracy") for r in rounds],
                             offset=0.0, color=_COLORS["est"], label="estimated (labeled sample)")
    if gold_acc:
        gx = sorted(gold_acc)
        ax.plot(gx, [gold_acc[k] for k in gx], color=_COLORS["gold"], marker="s", linewidth=1.6,
                markersize=6, label="true accuracy vs gold")
        drawn = True
        xs = sorted(set(xs) | set(gx))
    if drawn:
        _mark_final(ax, final_round)
        _set_round_ticks(ax, xs)
        ax.set_ylabel("accuracy of the round's labels")
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(0.0, lo), min(1.02, max(hi, lo + 0.05)))
        _legend_below(fig, ax, ncol=2)
        _style_axes(ax)
    else:
        _placeholder(ax, "no accuracy estimates recorded")
    ax.set_title("Label accuracy per round")
    return _png_bytes(fig)


def _plot_scores(labels: pd.DataFrame | None, gold: np.ndarray | None) -> bytes:
    has_scores = labels is not None and "score" in labels.columns
    scores = (pd.to_numeric(labels["score"], errors="coerce").to_numpy(dtype=float)
              if has_scores else None)
    if scores is not None and not np.isfinite(scores).any():
        scores = None
    n_panels = 2 if (gold is not None and scores is not None) else 1
    fig = _new_figure(6.0 if n_panels == 1 else 11.0, 4.0)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    if scores is None:
        _placeholder(axes[0], "no classifier scores in labels.csv")
        axes[0].set_title("Final classifier scores")
        return _png_bytes(fig)

    finite = np.isfinite(scores)
    bins = np.histogram_bin_edges(scores[finite], bins=40)

    def panel(ax, groups, title):
        any_drawn = False
        for mask, label, color in groups:
            sel = scores[mask & finite]
            if sel.size:
                ax.hist(sel, bins=bins, alpha=0.55, color=color, label=f"{label} (n={sel.size})",
                        edgecolor=color, linewidth=0.6)
                any_drawn = True
        if any_drawn:
            ax.set_xlabel("final classifier score (higher = positive)")
            ax.set_ylabel("rows")
            ax.legend(loc="best", fontsize=9, frameon=False)
            _style_axes(ax)
        else:
            _placeholder(ax, "no rows to show")
        ax.set_title(title)

    round_cols = _round_columns(labels)
    if round_cols and round_cols[0][0] == 0:
        r0 = _as_binary(labels[round_cols[0][1]])
        panel(axes[0], [(r0 == 1, "P\u0303 (round-0 positive)", _COLORS["P"]),
                        (r0 == 0, "\u00d1 (round-0 negative)", _COLORS["N"])],
              "Scores by round-0 pseudo-label")
    else:
        panel(axes[0], [(np.ones_like(finite), "all rows", _COLORS["est"])], "Final classifier scores")
    if n_panels == 2:
        panel(axes[1], [(gold == 1, "gold positive", _COLORS["P"]),
                        (gold == 0, "gold negative", _COLORS["N"])],
              "Scores by gold class")
    return _png_bytes(fig)


def _plot_confusion(cm: np.ndarray) -> bytes:
    fig = _new_figure(4.8, 4.2)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    total = cm.sum()
    vmax = cm.max() if cm.size else 0
    for i in range(2):
        for j in range(2):
            v = cm[i, j]
            share = f"\n{v / total:.1%}" if total else ""
            ax.text(j, i, f"{int(v)}{share}", ha="center", va="center", fontsize=12,
                    color="white" if vmax and v > 0.55 * vmax else "#222222")
    ax.set_xticks([0, 1], labels=["pred 0", "pred 1"])
    ax.set_yticks([0, 1], labels=["gold 0", "gold 1"])
    ax.set_xlabel("final label")
    ax.set_ylabel("gold label")
    ax.set_title("Final labels vs gold")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _png_bytes(fig)


def _plot_loss(rounds: list[dict]) -> bytes:
    fig = _new_figure()
    ax = fig.add_subplot()
    from matplotlib import colormaps

    trained = []
    for i, r in enumerate(rounds):
        hist = r.get("history") or []
        rows = [h for h in hist if isinstance(h, Mapping)]
        if rows:
            trained.append((r, rows))
    if not trained:
        _placeholder(ax, "no training history recorded")
        ax.set_title("Training / validation loss")
        return _png_bytes(fig)
    cmap = colormaps["viridis"]
    for k, (r, rows) in enumerate(trained):
        color = cmap(0.85 * k / max(1, len(trained) - 1))
        rnd = r.get("round", "?")
        ep = [(_num(h.get("epoch")) if _num(h.get("epoch")) is not None else j + 1)
              for j, h in enumerate(rows)]
        tr = [_num(h.get("train_loss")) for h in rows]
        va = [_num(h.get("val_loss")) for h in rows]
        tr_pts = [(e, v) for e, v in zip(ep, tr) if v is not None]
        va_pts = [(e, v) for e, v in zip(ep, va) if v is not None]
        if tr_pts:
            ax.plot(*zip(*tr_pts), color=color, linewidth=1.4, label=f"round {rnd} train")
        if va_pts:
            ax.plot(*zip(*va_pts), color=color, linewidth=1.4, linestyle="--", label=f"round {rnd} val")
        best = _num(r.get("best_epoch"))
        if best is not None and va_pts:
            near = min(va_pts, key=lambda p: abs(p[0] - best))
            ax.plot([near[0]], [near[1]], marker="*", markersize=11, color=color,
                    markeredgecolor="black", markeredgewidth=0.5, linestyle="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (risk estimate)")
    ax.set_title("Training (solid) / validation (dashed) loss")
    _legend_below(fig, ax, ncol=min(4, 2 * len(trained)), fontsize=8)
    _style_axes(ax)
    return _png_bytes(fig)


# --------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------- #
_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d8dee4; --accent:#2f6fb3; --bg:#ffffff; --alt:#f6f8fa; --hl:#fff8e1; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif; }
main { max-width:1160px; margin:0 auto; padding:28px 28px 48px; }
h1 { font-size:1.6em; margin:0 0 4px; }
h3 { font-size:1em; margin:16px 0 6px; color:var(--muted); }
h2 { font-size:1.2em; margin:34px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
.sub { color:var(--muted); margin:0 0 18px; }
.summary { display:grid; grid-template-columns:repeat(auto-fill,minmax(210px,1fr)); gap:10px; margin:0; }
.summary div { background:var(--alt); border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
.summary dt { font-size:.78em; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.summary dd { margin:2px 0 0; font-weight:600; overflow-wrap:anywhere; }
.reason { margin:12px 0 0; padding:8px 12px; border-left:3px solid var(--accent); background:var(--alt); }
.reason b { color:var(--muted); font-weight:600; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:.9em; font-variant-numeric:tabular-nums; }
th, td { padding:6px 7px; border-bottom:1px solid var(--line); text-align:right; vertical-align:top; white-space:nowrap; }
th { background:var(--alt); font-weight:600; white-space:normal; vertical-align:bottom; line-height:1.25; }
th:first-child, td:first-child, td.txt, th.txt { text-align:left; }
tbody tr:nth-child(even) { background:#fbfcfd; }
tr.final td { background:var(--hl); }
.iv { display:block; font-size:.8em; color:var(--muted); }
.badge { display:inline-block; margin-left:6px; padding:0 6px; border-radius:9px; background:var(--accent);
         color:#fff; font-size:.75em; font-weight:600; }
.grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(480px,1fr)); gap:18px; }
figure { margin:0; border:1px solid var(--line); border-radius:8px; padding:10px; background:#fff; }
figure.wide { grid-column:1/-1; }
figure img { display:block; width:100%; height:auto; }
figure.narrow img { max-width:460px; margin:0 auto; }
figcaption { color:var(--muted); font-size:.85em; margin-top:6px; }
table.kv, table.eval { width:auto; min-width:40%; }
table.kv td { text-align:left; white-space:normal; overflow-wrap:anywhere; }
table.kv td:first-child { color:var(--muted); padding-right:18px; }
details { margin-top:10px; }
summary { cursor:pointer; color:var(--accent); }
.note { color:var(--muted); font-size:.85em; }
footer { margin-top:40px; color:var(--muted); font-size:.8em; }
"""


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, float):
            sv = _fmt(v)
        elif isinstance(v, (dict, list, tuple)):
            sv = json.dumps(v, default=str, ensure_ascii=False)
        else:
            sv = "" if v is None else str(v)
        rows.append(f"<tr><td>{_esc(k)}</td><td>{_esc(sv)}</td></tr>")
    return "<table class=\"kv\"><tbody>" + "".join(rows) + "</tbody></table>"


def _records_table(records: Iterable[Any]) -> str:
    """Generic table for a list of flat dicts (e.g. evaluation per-round metrics)."""
    recs = [r for r in records if isinstance(r, Mapping)]
    if not recs:
        return ""
    cols: list[str] = []
    for r in recs:
        cols += [str(k) for k in r if str(k) not in cols]
    ths = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    rows = []
    for r in recs:
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, bool) or v is None:
                sv = _DASH if v is None else str(v)
            elif isinstance(v, (int, np.integer)):
                sv = str(v)
            elif _num(v) is not None:
                sv = _fmt(v)
            else:
                sv = json.dumps(v, default=str, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
            cells.append(f"<td>{_esc(sv)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class=\"table-wrap\"><table class=\"eval\"><thead><tr>" + ths + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _cell(value: str, interval: str = "", cls: str = "") -> str:
    iv = f"<span class=\"iv\">{_esc(interval)}</span>" if interval else ""
    c = f" class=\"{cls}\"" if cls else ""
    return f"<td{c}>{_esc(value)}{iv}</td>"


def _round_table(rounds: list[dict], gold_acc: dict[int, float], final_round: int | None) -> str:
    show_gold = bool(gold_acc)
    head = ["Round", "Source", "Risk", "Pseudo-pos. rate", "\u03c0", "\u03b8\u209a", "\u03b8\u2099",
            "Est. accuracy"]
    if show_gold:
        head.append("Gold accuracy")
    head += ["Rows changed", "Best epoch", "Train loss", "Val loss", "Time (s)"]
    txt_cols = {"Source", "Risk"}
    txt_attr = ' class="txt"'
    ths = "".join(f"<th{txt_attr if h in txt_cols else ''}>{_esc(h)}</th>" for h in head)
    body = []
    for i, r in enumerate(rounds):
        rn = _num(r.get("round"))
        rnd = int(rn) if rn is not None else i
        iv = r.get("intervals") or {}
        is_final = final_round is not None and rnd == final_round
        badge = "<span class=\"badge\">selected</span>" if is_final else ""
        cells = [f"<td>{_esc(rnd)}{badge}</td>",
                 _cell(str(r.get("source") or _DASH), cls="txt"),
                 _cell(str(r.get("risk") or _DASH), cls="txt"),
                 _cell(_fmt(r.get("pseudo_positive_rate")))]
        for key in ("pi", "theta_p", "theta_n", "accuracy"):
            cells.append(_cell(_fmt(r.get(key)), _fmt_interval(iv.get(key))))
        if show_gold:
            cells.append(_cell(_fmt(gold_acc.get(rnd))))
        cells += [_cell(_fmt_int(r.get("n_changed"))), _cell(_fmt_int(r.get("best_epoch"))),
                  _cell(_fmt(r.get("train_loss"))), _cell(_fmt(r.get("val_loss"))),
                  _cell(_fmt(r.get("seconds")))]
        tr_attr = ' class="final"' if is_final else ""
        body.append(f"<tr{tr_attr}>{''.join(cells)}</tr>")
    return ("<div class=\"table-wrap\"><table class=\"rounds\"><thead><tr>" + ths + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def _figure(name: str, png: bytes, caption: str, cls: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    c = f" class=\"{cls}\"" if cls else ""
    return (f"<figure{c} id=\"fig-{_esc(Path(name).stem)}\"><img src=\"{uri}\" alt=\"{_esc(caption)}\" "
            f"data-plot=\"{_esc(name)}\"><figcaption>{_esc(caption)}</figcaption></figure>")


def _backbone_name(backbone: Any) -> str:
    if isinstance(backbone, Mapping):
        return str(backbone.get("name") or backbone.get("model") or _DASH)
    return _DASH if backbone in (None, "") else str(backbone)


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
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

    # ---- gold-based figures -------------------------------------------------
    gold_acc: dict[int, float] = {}
    final_gold_acc: float | None = None
    final_f1: float | None = None
    cm: np.ndarray | None = None
    gold_source = ""
    if g is not None:
        gold_source = "gold array passed to write_report"
        for k, col in _round_columns(labels):
            a = _accuracy(labels[col], g)
            if a is not None:
                gold_acc[k] = a
        final_col = "final" if "final" in labels.columns else None
        if final_col is None and final_round is not None and f"round_{final_round}" in labels.columns:
            final_col = f"round_{final_round}"
        if final_col is not None:
            p = _as_binary(labels[final_col])
            ok = np.isfinite(p) & np.isfinite(g)
            final_gold_acc = _accuracy(p, g)
            final_f1 = _f1(p, g)
            cm = np.array([[np.sum((g[ok] == t) & (p[ok] == q)) for q in (0, 1)] for t in (0, 1)],
                          dtype=float)
    elif evaluation:
        gold_source = str(evaluation.get("gold") or "evaluation block of rounds.json")
        for i, e in enumerate(evaluation.get("per_round") or []):
            if isinstance(e, Mapping) and _num(e.get("accuracy")) is not None:
                rn = _num(e.get("round"))
                gold_acc[int(rn) if rn is not None else i] = float(e["accuracy"])
        final_gold_acc = _num(evaluation.get("final_accuracy"))
        conf = evaluation.get("confusion")
        try:
            arr = np.asarray(conf, dtype=float)
            if arr.shape == (2, 2) and np.all(np.isfinite(arr)):
                cm = arr
        except (TypeError, ValueError):
            cm = None
        if final_round is not None:
            for e in evaluation.get("per_round") or []:
                if isinstance(e, Mapping) and _num(e.get("round")) == final_round:
                    final_f1 = _num(e.get("f1"))

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
        _atomic_write_bytes(plots_dir / name, png)

    # ---- html -----------------------------------------------------------------
    n_rounds_done = sum(1 for r in round_list if r.get("source") != "pseudo-labels" and _num(r.get("round")) != 0)
    summary_items = [
        ("Corpus size", _fmt_int(rounds.get("n_corpus") if rounds.get("n_corpus") is not None
                                 else (len(labels) if labels is not None else None))),
        ("Labeled budget", _fmt_int(rounds.get("n_labeled"))),
        ("Backbone", _backbone_name(backbone)),
        ("Risk", str(params.get("risk") or _DASH)),
        ("Rounds run", f"{n_rounds_done} (of {_fmt_int(params.get('rounds'))} planned)"
         if params.get("rounds") is not None else str(n_rounds_done)),
        ("Final round", _DASH if final_round is None else str(final_round)),
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
        sections.append(_round_table(round_list, gold_acc, final_round))
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
    _atomic_write_bytes(report_path, doc.encode("utf-8"))
    return report_path
