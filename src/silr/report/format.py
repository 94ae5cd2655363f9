"""Formatting of the run's values for the report: escaping, numbers, intervals."""

from __future__ import annotations

import html
import math
from typing import Any

_DASH = "\u2014"  # shown for missing values


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
