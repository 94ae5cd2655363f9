"""Column validators: labels, scores and texts, with errors that name the file, column and rows."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from silr.io.errors import MAX_LISTED as _MAX_LISTED
from silr.io.errors import ROW_CONVENTION as _ROW_CONVENTION
from silr.io.errors import InputError

__all__ = ["parse_binary_labels", "parse_scores", "clean_texts"]

#: Accepted spellings of binary labels (compared after ``strip().casefold()``).
_LABEL_SPELLINGS: dict[str, int] = {
    "1": 1,
    "0": 0,
    "1.0": 1,
    "0.0": 0,
    "true": 1,
    "false": 0,
    "yes": 1,
    "no": 0,
    "pos": 1,
    "neg": 0,
    "positive": 1,
    "negative": 0,
}
_ACCEPTED_LABELS = "0/1, true/false, yes/no, pos/neg, positive/negative (any case, surrounding spaces ignored)"


# --------------------------------------------------------------------------------------------------------
# Column validators
# --------------------------------------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> tuple[pd.Series, np.ndarray]:
    """The values as a Series plus their spreadsheet row numbers.

    A Series with an integer index (as returned by :func:`read_table`, possibly filtered since) keeps its
    index labels as the row identity; anything else is numbered by position.
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} expects a sequence of values, not a single {type(values).__name__}")
    if isinstance(values, pd.Series):
        series = values
        if pd.api.types.is_integer_dtype(values.index.dtype):
            rows = values.index.to_numpy(dtype=np.int64) + 2
        else:
            rows = np.arange(len(values), dtype=np.int64) + 2
        return series.reset_index(drop=True), rows
    if isinstance(values, (np.ndarray, pd.Index, pd.api.extensions.ExtensionArray)):
        if values.ndim != 1:
            raise ValueError(f"{name} expects a 1-D sequence, got shape {values.shape}")
        series = pd.Series(values, copy=False)
    else:
        series = pd.Series(list(values), dtype=object)
    return series, np.arange(len(series), dtype=np.int64) + 2


def _rows_text(rows: np.ndarray) -> str:
    listed = ", ".join(str(int(r)) for r in rows[:_MAX_LISTED])
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    word = "row" if len(rows) == 1 else "rows"
    return f"{word} {listed}{more} ({_ROW_CONVENTION})"


def _values_text(values: Sequence[Any]) -> str:
    shown = []
    for v in list(dict.fromkeys(_hashable(v) for v in values))[:_MAX_LISTED]:
        text = repr(v)
        shown.append(text if len(text) <= 40 else text[:37] + "...")
    return ", ".join(shown)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _is_missing_scalar(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    if isinstance(value, str):
        return value.strip() == ""
    return False


_MISSING, _BAD = -1, -2


def _classify_label(value: Any) -> int:
    if _is_missing_scalar(value):
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return _LABEL_SPELLINGS.get(value.strip().casefold(), _BAD)
    if isinstance(value, numbers.Real):  # ints and floats (np.integer / np.floating included)
        return int(value) if value in (0, 1) else _BAD
    return _BAD


def parse_binary_labels(values: Any, *, what: str, column: str, allow_missing: bool = False) -> np.ndarray:
    """Convert a column of binary labels written in any common spelling to 0/1.

    Parameters
    ----------
    values : sequence, numpy.ndarray or pandas.Series
        The column. A Series with an integer index (e.g. from :func:`read_table`) reports rows by index.
    what : str
        What is being read, used in error messages, e.g. ``"labels file 'gold.csv'"``.
    column : str
        The column's name, used in error messages.
    allow_missing : bool, default False
        If True, missing labels (``None``, ``NaN``, ``""`` or whitespace) become ``NaN`` and a float
        array is returned; otherwise they are an error.

    Returns
    -------
    numpy.ndarray
        ``int8`` array of 0/1, or ``float64`` with 0.0/1.0/NaN when ``allow_missing`` is True.

    Raises
    ------
    InputError
        Naming ``what``, the column, the first offending rows and values, if a value is not one of: the
        integers 0/1, the floats 0.0/1.0, booleans, or the strings ``0``/``1`` (also ``0.0``/``1.0``),
        ``true``/``false``, ``yes``/``no``, ``pos``/``neg``, ``positive``/``negative`` (any case,
        surrounding whitespace ignored); or if a label is missing and ``allow_missing`` is False.

    Examples
    --------
    >>> parse_binary_labels(["yes", " 1 ", "Negative", 0, True], what="demo", column="y").tolist()
    [1, 1, 0, 0, 1]
    >>> parse_binary_labels(["1", ""], what="demo", column="y", allow_missing=True).tolist()
    [1.0, nan]
    """
    series, rows = _as_series(values, "parse_binary_labels")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([_classify_label(u) for u in uniques] + [_MISSING], dtype=np.int8)
    parsed = lookup[codes]  # code -1 (NaN / None) indexes the trailing _MISSING entry

    bad = np.flatnonzero(parsed == _BAD)
    if bad.size:
        raise InputError(
            f"{what}: column {column!r} has {bad.size} value{'s' if bad.size > 1 else ''} that "
            f"{'are' if bad.size > 1 else 'is'} not a binary label, at {_rows_text(rows[bad])}: "
            f"{_values_text(series.iloc[bad[:200]].tolist())}. Accepted labels: {_ACCEPTED_LABELS}"
        )
    missing = np.flatnonzero(parsed == _MISSING)
    if allow_missing:
        out = parsed.astype(np.float64)
        out[missing] = np.nan
        return out
    if missing.size:
        raise InputError(
            f"{what}: column {column!r} has {missing.size} missing label{'s' if missing.size > 1 else ''} "
            f"(empty, NaN or None) at {_rows_text(rows[missing])}; fill them in or drop those rows"
        )
    return parsed


def parse_scores(values: Any, *, what: str, column: str) -> np.ndarray:
    """Convert a column of real-valued scores (e.g. LLM confidences or logits) to ``float64``.

    Parameters
    ----------
    values : sequence, numpy.ndarray or pandas.Series
        Numbers, or strings holding numbers (surrounding whitespace ignored).
    what : str
        What is being read, used in error messages.
    column : str
        The column's name, used in error messages.

    Returns
    -------
    numpy.ndarray
        ``float64`` array, all finite.

    Raises
    ------
    InputError
        Naming ``what``, the column, the first offending rows and values, if a value is missing (``None``,
        ``NaN``, empty), not a number, or not finite (``inf``).

    Examples
    --------
    >>> parse_scores(["0.25", " -1e3 ", 2], what="demo", column="score").tolist()
    [0.25, -1000.0, 2.0]
    """
    series, rows = _as_series(values, "parse_scores")
    if series.dtype.kind in "biuf":  # plain numpy numeric column: vectorised
        out = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        bad_mask = ~np.isfinite(out)
    else:
        objects = series.to_numpy(dtype=object)
        out = np.empty(len(objects), dtype=np.float64)
        for i, value in enumerate(objects):
            out[i] = _to_float(value)
        bad_mask = ~np.isfinite(out)
    bad = np.flatnonzero(bad_mask)
    if bad.size:
        raise InputError(
            f"{what}: column {column!r} has {bad.size} value{'s' if bad.size > 1 else ''} that "
            f"{'are' if bad.size > 1 else 'is'} missing or not a finite number, at {_rows_text(rows[bad])}: "
            f"{_values_text(series.iloc[bad[:200]].tolist())}"
        )
    return out


def _to_float(value: Any) -> float:
    if _is_missing_scalar(value):
        return np.nan
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.nan
    if isinstance(value, numbers.Real):
        return float(value)
    return np.nan


def clean_texts(values: Any, *, what: str, column: str) -> list[str]:
    """Check a column of texts and return them with surrounding whitespace stripped.

    Parameters
    ----------
    values : sequence, numpy.ndarray or pandas.Series
        The texts. Numbers are accepted and converted with :class:`str`.
    what : str
        What is being read, used in error messages.
    column : str
        The column's name, used in error messages.

    Returns
    -------
    list of str
        One stripped, non-empty string per input value, in order.

    Raises
    ------
    InputError
        Naming ``what``, the column, the count and the first offending rows, if any text is missing
        (``None``, ``NaN``), empty or whitespace only, or is not a scalar (e.g. a JSON list).

    Examples
    --------
    >>> clean_texts(["  a film ", "great"], what="demo", column="text")
    ['a film', 'great']
    """
    series, rows = _as_series(values, "clean_texts")
    texts: list[str] = []
    empty: list[int] = []
    wrong: list[int] = []
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if _is_missing_scalar(value):
            empty.append(i)
        elif isinstance(value, str):
            texts.append(value.strip())
        elif isinstance(value, (numbers.Number, np.generic)):
            texts.append(str(value))
        else:
            wrong.append(i)
    if empty:
        idx = np.asarray(empty)
        raise InputError(
            f"{what}: column {column!r} has {idx.size} missing or empty text{'s' if idx.size > 1 else ''} "
            f"at {_rows_text(rows[idx])}; fill them in or drop those rows"
        )
    if wrong:
        idx = np.asarray(wrong)
        raise InputError(
            f"{what}: column {column!r} has {idx.size} value{'s' if idx.size > 1 else ''} that "
            f"{'are' if idx.size > 1 else 'is'} not text at {_rows_text(rows[idx])}: "
            f"{_values_text(series.iloc[idx[:200]].tolist())}"
        )
    return texts
