"""Reading and writing tables (CSV, TSV, JSON, JSON lines, Parquet), chosen by the file's suffix."""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from silr.io.atomic import atomic_path, json_default
from silr.io.errors import InputError

__all__ = ["SUPPORTED_SUFFIXES", "read_table", "write_table"]

#: File suffixes understood by :func:`read_table` and :func:`write_table` (matched case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")

_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}



def read_table(path: str | os.PathLike[str], *, required: Sequence[str] = (), what: str = "input") -> pd.DataFrame:
    """Read a table from a CSV, TSV, JSON, JSON-lines or Parquet file, chosen by the file's suffix.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its suffix (case-insensitive) picks the format: ``.csv``, ``.tsv``, ``.jsonl`` /
        ``.ndjson`` (one JSON object per line), ``.json`` (an array of records, a pandas ``columns`` /
        ``split`` document, or JSON lines) or ``.parquet`` / ``.pq``.
    required : sequence of str, optional
        Columns that must be present.
    what : str, default "input"
        What the file is, used in error messages (``"corpus"`` gives ``"corpus file 'x.csv' ..."``).

    Returns
    -------
    pandas.DataFrame
        The table with a fresh ``RangeIndex``. CSV and TSV cells are always read as strings, exactly as
        written (no type guessing, ``"NA"`` stays ``"NA"``, an empty cell is ``""``, quoted line breaks
        are kept verbatim); treating ``""`` as missing is up to the ``parse_*`` functions. JSON and Parquet
        keep their own types (``null`` becomes ``None`` / ``NaN``).

    Raises
    ------
    InputError
        If the file does not exist, has an unsupported suffix, is not UTF-8 (CSV/TSV/JSON), is malformed,
        has no rows, has duplicate column names, or lacks a required column.

    Notes
    -----
    CSV and TSV are parsed by pandas' C engine: no limit on field size, ``\\n``, ``\\r\\n`` and ``\\r`` line
    endings (mixed too), and a UTF-8 byte-order mark is dropped. A data row with more cells than the
    header is an error rather than being shifted or truncated; a row with fewer cells is padded with
    ``""``. Empty header cells are named ``"Unnamed: <position>"`` as pandas does.

    Examples
    --------
    >>> read_table("missing.csv", what="corpus")
    Traceback (most recent call last):
    ...
    silr.io.InputError: corpus file 'missing.csv' does not exist
    """
    path = Path(path)
    label = f"{what} file '{path}'"
    fmt = _format_of(path, label)
    if not path.exists():
        raise InputError(f"{label} does not exist")
    if path.is_dir():
        raise InputError(f"{label} is a directory, not a file")
    try:
        if fmt in ("csv", "tsv"):
            df = _read_delimited(path, label, sep="," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            df = _records_frame(_parse_json_lines(_read_utf8_text(path, label), label), label)
        elif fmt == "json":
            df = _read_json_document(_read_utf8_text(path, label), label)
        else:
            df = _read_parquet(path, label)
    except PermissionError as exc:
        raise InputError(f"{label} cannot be read: permission denied") from exc

    duplicated = pd.Index(df.columns)[pd.Index(df.columns).duplicated()].unique().tolist()
    if duplicated:
        names = ", ".join(repr(c) for c in duplicated)
        raise InputError(f"{label} has duplicate column names: {names}; give every column a distinct name")
    if df.shape[1] == 0:
        raise InputError(f"{label} has no columns")
    if len(df) == 0:
        raise InputError(f"{label} has no rows (only a header, or nothing at all)")
    _check_required(df, required, label)
    return df.reset_index(drop=True)


def _format_of(path: Path, label: str) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        suffix = path.suffix or "(none)"
        raise InputError(
            f"{label} has an unsupported suffix {suffix}; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return fmt


def _check_required(df: pd.DataFrame, required: Sequence[str], label: str) -> None:
    if isinstance(required, str):  # a lone column name, not a sequence of names
        required = (required,)
    columns = [str(c) for c in df.columns]
    missing = [name for name in dict.fromkeys(required) if name not in df.columns]
    if not missing:
        return
    found = ", ".join(repr(c) for c in columns)
    parts = []
    for name in missing:
        part = f"column {name!r}"
        hint = _closest_column(name, columns)
        if hint is not None:
            part += f" (did you mean {hint!r}?)"
        parts.append(part)
    raise InputError(f"{label} has no {' or '.join(parts)}; columns found: {found}")


def _closest_column(name: str, columns: list[str]) -> str | None:
    key = name.strip().casefold()
    for column in columns:  # same name up to case / surrounding whitespace: the most likely slip
        if column.strip().casefold() == key:
            return column
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.75)
    return close[0] if close else None


def _read_delimited(path: Path, label: str, *, sep: str) -> pd.DataFrame:
    kind = "CSV" if sep == "," else "TSV"
    try:
        # header=None: the first line defines the width, so a data row with too many cells is an error
        # (with header=0 pandas would silently turn an extra leading cell into the index).
        raw = pd.read_csv(
            path,
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            engine="c",
            quotechar='"',
            doublequote=True,
            skip_blank_lines=True,
        )
    except UnicodeDecodeError as exc:
        raise _not_utf8_error(path, label) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{label} has no rows (the file is empty)") from exc
    except pd.errors.ParserError as exc:
        wrong = _other_separator(path, sep, label)
        if wrong is not None:
            raise wrong from exc
        detail = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        hint = ""
        if "EOF inside string" in detail:
            hint = '; a quoted cell is never closed (check for a stray " character)'
        elif "Expected" in detail:
            hint = "; a row has more cells than the header (check for unquoted separators)"
        raise InputError(f"{label} is not a well-formed {kind} file: {detail}{hint}") from exc

    if raw.shape[1] == 1:  # one column: a file written with another separator reads as one wide column
        wrong = _other_separator(path, sep, label)
        if wrong is not None:
            raise wrong
    header = [cell if cell != "" else f"Unnamed: {i}" for i, cell in enumerate(raw.iloc[0].tolist())]
    df = raw.iloc[1:].set_axis(header, axis=1)
    # Short rows are padded with "" (na_filter=False keeps every cell a string); fillna covers old pandas.
    return df.fillna("")


def _other_separator(path: Path, sep: str, label: str) -> InputError | None:
    """The error for a file whose header line has no ``sep`` but another separator (a spreadsheet's semicolon CSV,
    a TSV named .csv, a CSV named .tsv), or None."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline().rstrip("\r\n")
    names = {";": "semicolon", "\t": "tab", ",": "comma"}
    for other in [o for o in names if o != sep and sep not in first]:
        if len([c for c in first.split(other) if c.strip()]) >= 2:
            fix = ("save it as comma-separated CSV (in a spreadsheet: 'CSV UTF-8 (comma delimited)')" if other == ";"
                   else f"give it the suffix {'.tsv' if other == chr(9) else '.csv'}")
            return InputError(f"{label} looks {names[other]}-separated (header line {first[:80]!r}), but a "
                              f"{path.suffix.lower()} file is read as {names[sep]}-separated; {fix}")
    return None


def _read_utf8_text(path: Path, label: str) -> str:
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8_error(path, label) from exc


def _not_utf8_error(path: Path, label: str) -> InputError:
    where = ""
    location = _first_utf8_error(path)
    if location is not None:
        offset, line, bad, reason, before = location
        shown = " ".join(f"0x{b:02x}" for b in bad[:4])
        where = f": byte {shown} at byte offset {offset} (line {line}) cannot be decoded ({reason})"
        if before:
            where += f", right after {before!r}"
    fixed = path.with_stem(path.stem + ".utf8")
    spreadsheet = ", or in a spreadsheet use 'Save as CSV UTF-8'" if path.suffix.lower() in (".csv", ".tsv") else ""
    return InputError(
        f"{label} is not UTF-8 encoded{where}. silr reads text files as UTF-8 only; re-encode the file as "
        f"UTF-8, e.g. `iconv -f latin1 -t utf-8 '{path}' > '{fixed}'` (replace latin1 by the file's real "
        f"encoding){spreadsheet}"
    )


def _first_utf8_error(path: Path, chunk_size: int = 1 << 20) -> tuple[int, int, bytes, str, str] | None:
    """Locate the first invalid UTF-8 sequence: (byte offset, 1-based line, bad bytes, reason, text before)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    fed = 0  # bytes handed to the decoder before the current chunk
    newlines = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(chunk_size)
            final = not chunk
            pending = decoder.getstate()[0]  # an incomplete multi-byte sequence carried over
            try:
                decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                buf = pending + chunk
                offset = fed - len(pending) + exc.start
                line = newlines + buf[: exc.start].count(b"\n") + 1
                line_start = buf.rfind(b"\n", 0, exc.start) + 1
                before = buf[max(line_start, exc.start - 30) : exc.start].decode("utf-8", "replace")
                return offset, line, bytes(buf[exc.start : exc.end]), exc.reason, before
            if final:
                return None
            newlines += chunk.count(b"\n")
            fed += len(chunk)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _parse_json_lines(text: str, label: str) -> list[dict[str, Any]]:
    records = []
    # JSON strings cannot hold a raw "\n", so splitting on it is exact; other Unicode line separators
    # (which str.splitlines would honour) may legally appear inside strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_object_without_duplicates)
        except _DuplicateKey as exc:
            raise InputError(f"{label} line {lineno} has the key {exc.key!r} twice") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{label} line {lineno} is not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{label} line {lineno} is a JSON {type(obj).__name__}, expected an object {{...}}")
        records.append(obj)
    return records


def _records_frame(records: list[dict[str, Any]], label: str) -> pd.DataFrame:
    if not records:
        raise InputError(f"{label} has no rows (the file is empty)")
    columns = list(dict.fromkeys(key for record in records for key in record))
    return pd.DataFrame.from_records(records, columns=columns)


def _read_json_document(text: str, label: str) -> pd.DataFrame:
    if not text.strip():
        raise InputError(f"{label} has no rows (the file is empty)")
    try:
        doc = json.loads(text, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKey as exc:
        raise InputError(f"{label} has an object with the key {exc.key!r} twice") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON lines saved as .json
            return _records_frame(_parse_json_lines(text, label), label)
        raise InputError(
            f"{label} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if isinstance(doc, list):
        bad = next((i for i, item in enumerate(doc) if not isinstance(item, dict)), None)
        if bad is not None:
            raise InputError(
                f"{label} must be an array of objects (records); item {bad + 1} is a JSON {type(doc[bad]).__name__}"
            )
        return _records_frame(doc, label)
    if isinstance(doc, dict):
        if isinstance(doc.get("columns"), list) and isinstance(doc.get("data"), list):  # pandas orient="split"
            return pd.DataFrame(doc["data"], columns=doc["columns"])
        if doc and all(isinstance(v, (list, dict)) for v in doc.values()):  # orient="columns" / dict of lists
            try:
                return pd.DataFrame(doc).reset_index(drop=True)
            except ValueError as exc:
                raise InputError(f"{label} has columns of different lengths: {exc}") from None
        if doc:  # one record on its own
            return pd.DataFrame([doc])
        raise InputError(f"{label} has no rows (an empty JSON object)")
    raise InputError(f"{label} must hold an array of objects, found a JSON {type(doc).__name__}")


def _read_parquet(path: Path, label: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # ParquetFile, not pq.read_table: the dataset reader fails obscurely on duplicate column names.
        with pq.ParquetFile(path) as parquet:
            names = parquet.schema_arrow.names
            if len(set(names)) != len(names):  # Parquet allows duplicate names; pandas would mangle them
                dupes = sorted({n for n in names if names.count(n) > 1})
                raise InputError(
                    f"{label} has duplicate column names: {', '.join(map(repr, dupes))}; "
                    "give every column a distinct name"
                )
            table = parquet.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, (PermissionError, InputError)):
            raise
        raise InputError(f"{label} could not be read as Parquet: {exc}") from exc
    return table.to_pandas()


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``df`` atomically in the format given by ``path``'s suffix (see :data:`SUPPORTED_SUFFIXES`).

    The index is not written. CSV/TSV are UTF-8 with ``\\n`` line endings and every non-numeric cell quoted
    (so cells holding separators, quotes, ``\\n`` or a lone ``\\r`` read back unchanged); missing values
    become empty cells. JSON lines (``.jsonl``/``.ndjson``) hold one object per row, ``.json`` an array of
    records, both UTF-8 without ASCII escaping, with ``null`` for missing values and floats written exactly.
    Parquet uses pyarrow. The file only appears (or replaces the old one) once it is complete.

    Parameters
    ----------
    df : pandas.DataFrame
        The table; column names must be unique.
    path : str or os.PathLike
        Destination file.

    Raises
    ------
    InputError
        If the suffix is not supported.
    ValueError
        If ``df`` has duplicate column names.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"write_table expects a pandas DataFrame, got {type(df).__name__}")
    path = Path(path)
    fmt = _format_of(path, f"output file '{path}'")
    if df.columns.duplicated().any():
        dupes = df.columns[df.columns.duplicated()].unique().tolist()
        raise ValueError(f"cannot write '{path}': duplicate column names {dupes}")
    with atomic_path(path) as tmp:
        if fmt in ("csv", "tsv"):
            df.to_csv(
                tmp,
                sep="," if fmt == "csv" else "\t",
                index=False,
                encoding="utf-8",
                lineterminator="\n",
                quoting=csv.QUOTE_NONNUMERIC,
            )
        elif fmt in ("jsonl", "json"):
            _write_json(df, tmp, lines=fmt == "jsonl")
        else:
            df.to_parquet(tmp, index=False, engine="pyarrow")


def _write_json(df: pd.DataFrame, tmp: Path, *, lines: bool) -> None:
    keys = [str(c) for c in df.columns]
    columns = [df[c].astype(object).where(df[c].notna(), None).tolist() for c in df.columns]
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        if not lines:
            fh.write("[")
        for i, row in enumerate(zip(*columns)):
            line = json.dumps(dict(zip(keys, row)), ensure_ascii=False, allow_nan=False, default=json_default)
            if lines:
                fh.write(line + "\n")
            else:
                fh.write(("\n" if i == 0 else ",\n") + line)
        if not lines:
            fh.write("\n]\n")

