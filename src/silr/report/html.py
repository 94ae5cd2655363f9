"""The report's HTML: one self-contained page (inline CSS, figures as data URIs, no scripts)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from silr.report.format import _DASH, _esc, _fmt, _fmt_int, _fmt_interval, _num

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
            "Est. accuracy", "Est. gain vs round 0"]
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
        g = r.get("gain_over_round0") or {}  # "did refinement help?" (silr.sampling.refit.RoundGains)
        cells.append(_cell(f"{g['value']:+.3f}", _fmt_interval([g["low"], g["high"]])) if g else _cell(_DASH))
        if show_gold:
            cells.append(_cell(_fmt(gold_acc.get(rnd))))
        cells += [_cell(_fmt_int(r.get("n_changed"))), _cell(_fmt_int(r.get("best_epoch"))),
                  _cell(_fmt(r.get("train_loss"))), _cell(_fmt(r.get("val_loss"))),
                  _cell(_fmt(r.get("seconds")))]
        tr_attr = ' class="final"' if is_final else ""
        body.append(f"<tr{tr_attr}>{''.join(cells)}</tr>")
    from silr.sampling.refit import gain_note

    note = gain_note(rounds)
    foot = f"<p class=\"note\">Est. gain: {_esc(note)}</p>" if note else ""
    return ("<div class=\"table-wrap\"><table class=\"rounds\"><thead><tr>" + ths + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>" + foot)


def _figure(name: str, png: bytes, caption: str, cls: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    c = f" class=\"{cls}\"" if cls else ""
    return (f"<figure{c} id=\"fig-{_esc(Path(name).stem)}\"><img src=\"{uri}\" alt=\"{_esc(caption)}\" "
            f"data-plot=\"{_esc(name)}\"><figcaption>{_esc(caption)}</figcaption></figure>")


def _backbone_name(backbone: Any) -> str:
    if isinstance(backbone, Mapping):
        return str(backbone.get("name") or backbone.get("model") or _DASH)
    return _DASH if backbone in (None, "") else str(backbone)
