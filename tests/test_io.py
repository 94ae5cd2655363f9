"""Tests for silr.io: readers give actionable errors, writers are atomic, validators accept every spelling."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from silr.io import (
    SUPPORTED_SUFFIXES,
    InputError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    clean_texts,
    parse_binary_labels,
    parse_scores,
    read_table,
    write_table,
)

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary files atomic writes might leave behind."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ---------------------------------------------------------------------------------------------------------
# read_table: CSV parsing
# ---------------------------------------------------------------------------------------------------------


def test_csv_cells_are_read_verbatim_as_strings(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b"text,label,score\nNA,1,007\nnull,,0.5\n")
    df = read_table(path)
    assert df.columns.tolist() == ["text", "label", "score"]
    # No NA guessing, no numeric conversion: what the user typed is what comes back.
    assert df["text"].tolist() == ["NA", "null"]
    assert df["label"].tolist() == ["1", ""]
    assert df["score"].tolist() == ["007", "0.5"]


def test_csv_mixed_line_endings(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b"text,label\r\na,1\nb,0\rc,1\r\nd,0")
    df = read_table(path)
    assert df["text"].tolist() == ["a", "b", "c", "d"]
    assert df["label"].tolist() == ["1", "0", "1", "0"]


def test_csv_quoted_newlines_and_quotes_are_kept(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b'text,label\n"line one\r\nline two",1\n"say ""hi"", ok\rthen",0\n')
    df = read_table(path)
    assert df["text"].tolist() == ["line one\r\nline two", 'say "hi", ok\rthen']
    assert df["label"].tolist() == ["1", "0"]


def test_csv_utf8_bom_is_dropped_from_header(tmp_path):
    path = write_bytes(tmp_path / "c.csv", "\ufefftext,label\ncafé,1\n".encode())
    df = read_table(path, required=["text"])
    assert df.columns.tolist() == ["text", "label"]
    assert df["text"].tolist() == ["café"]


def test_csv_one_megabyte_field(tmp_path):
    big = "x" * 1_000_000 + ", with a comma and \"quotes\""
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": [big, "small"], "label": [1, 0]}).to_csv(path, index=False)
    df = read_table(path)
    assert len(df["text"].iloc[0]) == len(big)
    assert df["text"].tolist() == [big, "small"]


def test_tsv_reads_tabs_and_literal_midfield_quotes(tmp_path):
    path = write_bytes(tmp_path / "t.tsv", b'text\tlabel\nhe said "hi\t1\n"a\tb"\t0\n')
    df = read_table(path)
    assert df["text"].tolist() == ['he said "hi', "a\tb"]


def test_csv_row_with_too_many_cells_is_an_error_not_a_silent_shift(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b"text,label\nhello, world,1\n")
    with pytest.raises(InputError, match=r"c\.csv.*not a well-formed CSV.*line 2.*more cells than the header"):
        read_table(path)


def test_csv_unclosed_quote(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b'text,label\n"never closed,1\nx,0\n')
    with pytest.raises(InputError, match=r"never closed"):
        read_table(path)


def test_csv_short_rows_are_padded_with_empty_strings(tmp_path):
    path = write_bytes(tmp_path / "c.csv", b"text,label\nonly text\nx,1\n")
    df = read_table(path)
    assert df["label"].tolist() == ["", "1"]


# ---------------------------------------------------------------------------------------------------------
# read_table: errors
# ---------------------------------------------------------------------------------------------------------


def test_latin1_file_is_rejected_with_offset_and_reencoding_hint(tmp_path):
    path = write_bytes(tmp_path / "latin.csv", "text,label\nok,1\ncafé,0\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        read_table(path, what="corpus")
    message = str(info.value)
    assert "corpus file" in message and "latin.csv" in message
    assert "not UTF-8" in message
    # 'text,label\n' (11) + 'ok,1\n' (5) + 'caf' (3) -> the é byte is at offset 19 on line 3.
    assert "0xe9" in message and "byte offset 19" in message and "line 3" in message
    assert "re-encode" in message and "iconv" in message


def test_latin1_error_offset_past_the_first_chunk(tmp_path):
    # The bad byte sits beyond pandas' and our 1 MiB read chunks, after multi-byte characters.
    prefix = ("é" * 600_000).encode()  # 1.2 MB of valid 2-byte UTF-8
    path = write_bytes(tmp_path / "big.csv", b"text\n" + prefix + b"\xff\n")
    with pytest.raises(InputError, match=rf"0xff at byte offset {5 + len(prefix)} \(line 2\)"):
        read_table(path)


def test_latin1_json_lines_rejected(tmp_path):
    path = write_bytes(tmp_path / "x.jsonl", '{"text": "naïve"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"x\.jsonl.*not UTF-8.*byte offset 12"):
        read_table(path)


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_empty_file(tmp_path, content):
    path = write_bytes(tmp_path / "empty.csv", content)
    with pytest.raises(InputError, match=r"corpus file '.*empty\.csv' has no rows"):
        read_table(path, what="corpus")


@pytest.mark.parametrize("name,content", [("h.csv", b"text,label\n"), ("h.tsv", b"text\tlabel\r\n"), ("h.jsonl", b"\n")])
def test_header_only(tmp_path, name, content):
    path = write_bytes(tmp_path / name, content)
    with pytest.raises(InputError, match=r"has no rows"):
        read_table(path)


def test_duplicate_column_names(tmp_path):
    path = write_bytes(tmp_path / "d.csv", b"text,label,text\na,1,b\n")
    with pytest.raises(InputError, match=r"d\.csv' has duplicate column names: 'text'"):
        read_table(path)


def test_duplicate_column_names_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table([pa.array(["a"]), pa.array([1])], names=["label", "label"]), path)
    with pytest.raises(InputError, match=r"duplicate column names: 'label'"):
        read_table(path)


def test_missing_required_column_names_it_and_lists_found(tmp_path):
    path = write_bytes(tmp_path / "m.csv", b"text,lable\na,1\n")
    with pytest.raises(InputError) as info:
        read_table(path, required=["text", "label"], what="labels")
    message = str(info.value)
    assert "labels file" in message and "m.csv" in message
    assert "no column 'label'" in message
    assert "columns found: 'text', 'lable'" in message
    assert "did you mean 'lable'" in message


def test_required_column_hint_for_stray_whitespace(tmp_path):
    path = write_bytes(tmp_path / "m.csv", b"text ,label\na,1\n")
    with pytest.raises(InputError, match=r"no column 'text' \(did you mean 'text '\?\)"):
        read_table(path, required=["text"])


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"^corpus file '.*x\.csv' does not exist$"):
        read_table(tmp_path / "x.csv", what="corpus")


def test_directory_is_not_a_file(tmp_path):
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_table(folder)


def test_unknown_suffix_lists_supported(tmp_path):
    path = write_bytes(tmp_path / "sheet.xlsx", b"whatever")
    with pytest.raises(InputError) as info:
        read_table(path)
    message = str(info.value)
    assert "sheet.xlsx" in message and ".xlsx" in message
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in message


def test_suffix_is_case_insensitive(tmp_path):
    path = write_bytes(tmp_path / "UPPER.CSV", b"text\na\n")
    assert read_table(path)["text"].tolist() == ["a"]


def test_corrupt_parquet(tmp_path):
    path = write_bytes(tmp_path / "bad.parquet", b"not parquet at all")
    with pytest.raises(InputError, match=r"bad\.parquet' could not be read as Parquet"):
        read_table(path)


# ---------------------------------------------------------------------------------------------------------
# read_table: JSON
# ---------------------------------------------------------------------------------------------------------


def test_json_lines_keeps_types_and_fills_missing_keys(tmp_path):
    path = write_bytes(tmp_path / "x.ndjson", b'{"text": "a", "label": 1}\r\n\n{"text": "b", "label": null, "s": 0.5}\n')
    df = read_table(path, required=["text", "label"])
    assert df.columns.tolist() == ["text", "label", "s"]
    assert df["text"].tolist() == ["a", "b"]
    assert df["label"].iloc[0] == 1 and pd.isna(df["label"].iloc[1])
    assert pd.isna(df["s"].iloc[0]) and df["s"].iloc[1] == 0.5


def test_json_lines_bad_line_is_named(tmp_path):
    path = write_bytes(tmp_path / "x.jsonl", b'{"text": "a"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"x\.jsonl' line 2 is not valid JSON"):
        read_table(path)


def test_json_lines_non_object_and_duplicate_key(tmp_path):
    path = write_bytes(tmp_path / "x.jsonl", b'{"text": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"line 2 is a JSON list, expected an object"):
        read_table(path)
    write_bytes(path, b'{"text": "a", "text": "b"}\n')
    with pytest.raises(InputError, match=r"line 1 has the key 'text' twice"):
        read_table(path)


@pytest.mark.parametrize(
    "content",
    [
        b'[{"text": "a", "label": 1}, {"text": "b", "label": 0}]',  # records
        b'{"text": {"0": "a", "1": "b"}, "label": {"0": 1, "1": 0}}',  # pandas default orient="columns"
        b'{"columns": ["text", "label"], "index": [0, 1], "data": [["a", 1], ["b", 0]]}',  # orient="split"
        b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n',  # JSON lines saved as .json
    ],
)
def test_json_document_layouts(tmp_path, content):
    df = read_table(write_bytes(tmp_path / "x.json", content), required=["text", "label"])
    assert df["text"].tolist() == ["a", "b"]
    assert df["label"].tolist() == [1, 0]


def test_json_scalar_document_rejected(tmp_path):
    with pytest.raises(InputError, match=r"array of objects"):
        read_table(write_bytes(tmp_path / "x.json", b"42"))


# ---------------------------------------------------------------------------------------------------------
# write_table + round trips
# ---------------------------------------------------------------------------------------------------------

NASTY = ['"', ",", "\n", "\r\n", "\r", "\t", "NA", " ", "''", "\u2028", "é", "😀", '""', "\x00"]
nasty_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(NASTY)), max_size=6).map("".join)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
@FAST
@given(texts=st.lists(nasty_text, min_size=1, max_size=8))
def test_texts_round_trip_exactly(suffix, texts):
    df = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        write_table(df, path)
        back = read_table(path, required=["text", "label"])
        assert leftovers(Path(folder)) == []
    assert back["text"].tolist() == texts
    # CSV/TSV come back as strings by design; the typed formats keep ints.
    expected = [str(v) for v in df["label"]] if suffix in (".csv", ".tsv") else df["label"].tolist()
    assert back["label"].tolist() == expected


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_float_scores_round_trip_exactly(tmp_path, suffix):
    scores = [0.1 + 0.2, 1e-300, -2.5e10, np.nan, 1 / 3]
    path = tmp_path / f"s{suffix}"
    write_table(pd.DataFrame({"s": scores}), path)
    column = read_table(path)["s"]
    back = parse_scores(column.iloc[[0, 1, 2, 4]], what="x", column="s")
    assert back.tolist() == [0.1 + 0.2, 1e-300, -2.5e10, 1 / 3]  # bit-exact, not rounded to 10 digits
    missing = column.iloc[3]
    assert missing == "" if suffix == ".csv" else np.isnan(missing)  # NaN -> empty cell / null


def test_write_csv_quotes_lone_carriage_return(tmp_path):
    path = tmp_path / "r.csv"
    write_table(pd.DataFrame({"text": ["a\rb"]}), path)
    assert path.read_bytes() == b'"text"\n"a\rb"\n'


def test_write_table_rejects_duplicate_columns_and_unknown_suffix(tmp_path):
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(ValueError, match="duplicate column names"):
        write_table(dup, tmp_path / "d.csv")
    with pytest.raises(InputError, match="unsupported suffix .xlsx"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "d.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_write_table_creates_parent_folders(tmp_path):
    path = tmp_path / "out" / "nested" / "labels.jsonl"
    write_table(pd.DataFrame({"text": ["a"], "label": [1]}), path)
    assert path.read_text(encoding="utf-8") == '{"text": "a", "label": 1}\n'


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "labels.csv"
    target.write_text("old content\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != target
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_write_table_failing_writer_keeps_old_file(tmp_path):
    target = tmp_path / "out.parquet"
    write_table(pd.DataFrame({"text": ["old"]}), target)
    before = target.read_bytes()
    unwritable = pd.DataFrame({"mixed": [1, "two", object()]})  # pyarrow cannot convert this column
    with pytest.raises(Exception):
        write_table(unwritable, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_atomic_path_keyboard_interrupt_cleans_up(tmp_path):
    target = tmp_path / "model.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_and_bytes_replace_content(tmp_path):
    target = tmp_path / "report.txt"
    atomic_write_text(target, "first\r\nline ü\n")
    assert target.read_bytes() == "first\r\nline ü\n".encode()  # no newline translation
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_keeps_permissions_of_replaced_file(tmp_path):
    target = tmp_path / "shared.txt"
    target.write_text("x")
    target.chmod(0o640)
    atomic_write_text(target, "y")
    assert target.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.txt"
    atomic_write_text(fresh, "z")  # not mkstemp's private 0600: the umask default like open() would give
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------------------
# parse_binary_labels
# ---------------------------------------------------------------------------------------------------------

SPELLINGS = {
    "1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0,
    "pos": 1, "neg": 0, "positive": 1, "negative": 0, "1.0": 1, "0.0": 0,
}  # fmt: skip


def test_labels_common_spellings():
    values = ["yes", "no", " 1 ", "0", "TRUE", "False", "Pos", "NEG", "positive", "Negative", 1, 0, 1.0, 0.0, True]
    out = parse_binary_labels(values, what="w", column="label")
    assert out.dtype == np.int8
    assert out.tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]


def test_labels_from_numeric_arrays_and_series():
    assert parse_binary_labels(np.array([0, 1, 1]), what="w", column="y").tolist() == [0, 1, 1]
    assert parse_binary_labels(pd.Series([1.0, 0.0]), what="w", column="y").tolist() == [1, 0]
    assert parse_binary_labels(pd.Series([True, False]), what="w", column="y").tolist() == [1, 0]


def spelled(word: str, draw_case, pad: str) -> str:
    cased = "".join(c.upper() if up else c.lower() for c, up in zip(word, draw_case))
    return f"{pad}{cased}{pad[::-1]}"


label_token = st.tuples(
    st.sampled_from(sorted(SPELLINGS)),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.sampled_from(["", " ", "\t", "  \n"]),
).map(lambda t: (spelled(t[0], t[1], t[2]), SPELLINGS[t[0]]))


@settings(max_examples=80, deadline=None)
@given(tokens=st.lists(label_token, min_size=1, max_size=40))
def test_labels_accept_every_spelling(tokens):
    values = [v for v, _ in tokens]
    assert parse_binary_labels(values, what="w", column="y").tolist() == [y for _, y in tokens]


def is_accepted(value: str) -> bool:
    return value.strip() == "" or value.strip().casefold() in SPELLINGS


@settings(max_examples=80, deadline=None)
@given(
    good=st.lists(st.sampled_from(["0", "1", "yes", "no"]), min_size=0, max_size=30),
    bad=st.lists(st.tuples(st.integers(0, 30), st.text(min_size=1, max_size=10).filter(lambda s: not is_accepted(s))), min_size=1, max_size=8),
)
def test_labels_reject_garbage_naming_rows(good, bad):
    values: list[object] = list(good)
    for position, garbage in bad:
        values.insert(min(position, len(values)), garbage)
    bad_rows = [i + 2 for i, v in enumerate(values) if not is_accepted(v)]
    with pytest.raises(InputError) as info:
        parse_binary_labels(values, what="labels file 'gold.csv'", column="label")
    message = str(info.value)
    assert message.startswith("labels file 'gold.csv': column 'label'")
    assert f"has {len(bad_rows)} value" in message
    listed = re.search(r"at rows? ([\d, ]+)", message).group(1)
    assert [int(r) for r in listed.split(", ")] == bad_rows[:5]
    assert repr(values[bad_rows[0] - 2]) in message or "..." in message


def test_labels_reject_other_numbers():
    with pytest.raises(InputError, match=r"rows 3, 4 .*: 2, -1"):
        parse_binary_labels([1, 2, -1, 0], what="w", column="y")
    with pytest.raises(InputError, match=r"row 2 .*0\.5"):
        parse_binary_labels(np.array([0.5, 1.0]), what="w", column="y")


def test_labels_missing_values():
    values = ["1", "", None, np.nan, "  ", "0"]
    with pytest.raises(InputError, match=r"column 'y' has 4 missing labels .* at rows 3, 4, 5, 6 \(row numbers as in a spreadsheet"):
        parse_binary_labels(values, what="w", column="y")
    out = parse_binary_labels(values, what="w", column="y", allow_missing=True)
    assert out.dtype == np.float64
    assert out[0] == 1 and out[5] == 0 and np.isnan(out[1:5]).all()


def test_labels_nan_in_float_column_with_allow_missing():
    out = parse_binary_labels(pd.Series([1.0, np.nan, 0.0]), what="w", column="y", allow_missing=True)
    assert out[0] == 1.0 and np.isnan(out[1]) and out[2] == 0.0


def test_labels_rows_follow_the_index_of_a_filtered_frame(tmp_path):
    path = write_bytes(tmp_path / "g.csv", b"text,label\na,1\nb,0\nc,maybe\n")
    df = read_table(path)
    kept = df[df["text"] != "a"]  # index 1, 2 -> spreadsheet rows 3, 4
    with pytest.raises(InputError, match=r"at row 4 \(.*'maybe'"):
        parse_binary_labels(kept["label"], what="w", column="label")


def test_labels_many_bad_rows_are_summarised():
    with pytest.raises(InputError, match=r"12 values .* rows 2, 3, 4, 5, 6 and 7 more"):
        parse_binary_labels(["x"] * 12, what="w", column="y")


def test_labels_single_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse_binary_labels("1", what="w", column="y")


# ---------------------------------------------------------------------------------------------------------
# parse_scores and clean_texts
# ---------------------------------------------------------------------------------------------------------


def test_scores_parse_strings_and_numbers():
    out = parse_scores(["0.25", " -1e3 ", 2, np.float32(0.5)], what="w", column="s")
    assert out.dtype == np.float64 and out.tolist() == [0.25, -1000.0, 2.0, 0.5]
    assert parse_scores(pd.Series([1, 2], dtype="int64"), what="w", column="s").tolist() == [1.0, 2.0]


def test_scores_reject_non_numeric_missing_and_infinite():
    with pytest.raises(InputError, match=r"w: column 's' has 4 values .* rows 3, 4, 5, 6 .*'abc', None, '', 'inf'"):
        parse_scores(["1", "abc", None, "", "inf"], what="w", column="s")
    with pytest.raises(InputError, match=r"row 3 .*nan"):
        parse_scores(pd.Series([0.1, np.nan]), what="w", column="s")
    with pytest.raises(InputError, match=r"row 2"):
        parse_scores(pd.Series([pd.NA, 1.0], dtype="Float64"), what="w", column="s")


def test_clean_texts_strips_and_rejects_blank_rows():
    assert clean_texts(["  a film ", "great\n", 42], what="w", column="text") == ["a film", "great", "42"]
    values = ["ok", "", None, np.nan, " \t ", "fine", "", "", ""]
    with pytest.raises(InputError, match=r"7 missing or empty texts at rows 3, 4, 5, 6, 8 and 2 more"):
        clean_texts(values, what="corpus file 'c.csv'", column="text")


def test_clean_texts_rejects_non_scalar_values():
    with pytest.raises(InputError, match=r"not text at row 3"):
        clean_texts(["a", ["b"]], what="w", column="text")


def test_end_to_end_messages_name_the_file(tmp_path):
    path = write_bytes(tmp_path / "gold.csv", b"text,label\ngood,yes\n,no\nbad,perhaps\n")
    df = read_table(path, required=["text", "label"], what="labels")
    what = f"labels file '{path.name}'"
    with pytest.raises(InputError, match=r"labels file 'gold\.csv': column 'text' .* row 3"):
        clean_texts(df["text"], what=what, column="text")
    with pytest.raises(InputError, match=r"labels file 'gold\.csv': column 'label' .* row 4 .*'perhaps'"):
        parse_binary_labels(df["label"], what=what, column="label")
