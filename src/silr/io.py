"""Reading and writing the tables silr works on, with errors a user can act on.

Everything a user hands to silr (a corpus of texts, a small labeled sample, LLM scores) goes through
:func:`read_table` and the ``parse_*`` / :func:`clean_texts` validators. Every problem with such input is
reported as an :class:`InputError` whose message names the file, the column and the offending rows, so the
CLI can print it as is. Outputs are written atomically (:func:`write_table`, :func:`atomic_write_text`,
:func:`atomic_write_bytes`, :func:`atomic_path`): a crash or an exception mid-write never leaves a
half-written file behind, and an existing file is only replaced once the new one is complete.

Row numbers in messages follow the spreadsheet convention: the header is row 1 and the first data row is
row 2 (so data row ``i``, counted from 0, is reported as row ``i + 2``).

Examples
--------
>>> import pandas as pd, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "corpus.csv"
>>> write_table(pd.DataFrame({"text": ["good film", "dull"], "label": ["yes", "no"]}), path)
>>> df = read_table(path, required=["text", "label"], what="corpus")
>>> parse_binary_labels(df["label"], what=f"corpus file '{path.name}'", column="label").tolist()
[1, 0]
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import json
import numbers
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "InputError",
    "SUPPORTED_SUFFIXES",
    "read_table",
    "write_table",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_path",
    "parse_binary_labels",
    "parse_scores",
    "clean_texts",
]

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

#: How many offending rows / values an error message lists before summarising the rest as a count.
_MAX_LISTED = 5

_ROW_CONVENTION = "row numbers as in a spreadsheet: header = row 1, first data row = row 2"

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


class InputError(ValueError):
    """A problem with user-supplied input (a file, a column or some rows of it).

    The message is meant for the end user: it names the file (or what was being read), the column and the
    offending rows, and where possible says how to fix the problem.
    """


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


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
        detail = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        hint = ""
        if "EOF inside string" in detail:
            hint = '; a quoted cell is never closed (check for a stray " character)'
        elif "Expected" in detail:
            hint = "; a row has more cells than the header (check for unquoted separators)"
        raise InputError(f"{label} is not a well-formed {kind} file: {detail}{hint}") from exc

    header = [cell if cell != "" else f"Unnamed: {i}" for i, cell in enumerate(raw.iloc[0].tolist())]
    df = raw.iloc[1:].set_axis(header, axis=1)
    # Short rows are padded with "" (na_filter=False keeps every cell a string); fillna covers old pandas.
    return df.fillna("")


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


# --------------------------------------------------------------------------------------------------------
# Writing (atomic)
# --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder as ``path`` (so the final :func:`os.replace` is atomic),
    is hidden (``.name.XXXX.tmp.suffix``) and keeps ``path``'s suffix, so writers that choose a format by
    suffix still work. On success it is flushed to disk (``fsync``), given the permissions a newly created
    file would get (or those of the file it replaces), and renamed onto ``path``. If the block raises,
    anything written is removed and an existing ``path`` is left untouched. Missing parent folders are
    created.

    Parameters
    ----------
    path : str or os.PathLike
        The final destination.

    Yields
    ------
    pathlib.Path
        The temporary path. It exists (empty) when the block starts; the block may overwrite it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model.bin"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_bytes(b"weights")
    >>> out.read_bytes()
    b'weights'
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write '{path}': it is a directory")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        _set_final_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced only once the new content is fully on disk.
    data : bytes
        The content.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8, byte for byte (no newline translation).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced only once the new content is fully on disk.
    text : str
        The content.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


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
            line = json.dumps(dict(zip(keys, row)), ensure_ascii=False, allow_nan=False, default=_json_default)
            if lines:
                fh.write(line + "\n")
            else:
                fh.write(("\n" if i == 0 else ",\n") + line)
        if not lines:
            fh.write("\n]\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} value to JSON")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened (Windows)."""
    if sys.platform == "win32":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_final_mode(tmp: Path, path: Path) -> None:
    """mkstemp creates 0600 files; give the result the mode of the file it replaces, or the umask default."""
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_current_umask()
        os.chmod(tmp, mode)
    except OSError:
        pass


def _current_umask() -> int:
    with contextlib.suppress(OSError, ValueError):  # Linux >= 4.7 exposes it without changing it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
