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

from silr.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, json_default
from silr.io.columns import clean_texts, parse_binary_labels, parse_scores
from silr.io.errors import InputError
from silr.io.tables import SUPPORTED_SUFFIXES, read_table, write_table

__all__ = [
    "InputError",
    "SUPPORTED_SUFFIXES",
    "read_table",
    "write_table",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_path",
    "json_default",
    "parse_binary_labels",
    "parse_scores",
    "clean_texts",
]
