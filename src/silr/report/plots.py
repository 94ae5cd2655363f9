"""The report's figures, drawn on a bare matplotlib Figure (the caller's pyplot backend is never touched)."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from silr.report.format import _interval, _num
from silr.report.metrics import _as_binary, _round_columns

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
