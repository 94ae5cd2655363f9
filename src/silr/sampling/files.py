"""The files of ``silr sample``: the rows to label (``row``, ``text``, empty ``label``) and the design beside them.

``FILE`` gets the sampled rows; ``FILE.design.json`` the design (strata of every corpus row, the allocation,
the seed) and a fingerprint of the corpus it was drawn from (its texts and pseudo-labels). ``silr refine
--labeled FILE`` reads both back (:func:`read_labeled_design`): every labeled row must be a sampled corpus row
with the same text and a filled 0/1 label, and the corpus must be the one the design was drawn from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from silr.io import InputError, atomic_write_text, parse_binary_labels, write_table
from silr.sampling.design import SamplingDesign, design_from_dict

__all__ = ["design_path", "corpus_fingerprint", "write_sample", "read_labeled_design", "LabeledDesign", "drawn_inputs",
           "design_inputs_from_annotation"]

FORMAT = "silr-sample-design/1"


def design_path(labeled: str | Path) -> Path:
    """The side file of a sample file: ``FILE.design.json``."""
    p = Path(labeled)
    return p.with_name(p.name + ".design.json")


def corpus_fingerprint(texts, pseudo) -> str:
    h = hashlib.sha256()
    for t, s in zip(texts, np.asarray(pseudo).astype(np.int64)):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00" + bytes([int(s)]) + b"\x01")
    return h.hexdigest()[:16]


def write_sample(out: str | Path, texts, pseudo, design: SamplingDesign, *, corpus: str, pseudo_col: str,
                 score_col: str | None, text_col: str = "text", label_col: str = "label",
                 known: dict | None = None) -> Path:
    """Write the rows to label and the design side file (both atomically); returns the side file's path.
    ``known``: labels already given (corpus row -> label), kept in the file (``--more``)."""
    rows = design.rows
    known = known or {}
    df = pd.DataFrame({"row": rows, text_col: [texts[i] for i in rows],
                       label_col: [known.get(int(i), "") for i in rows]})
    write_table(df, out)
    rec = {"format": FORMAT, "corpus": str(corpus), "corpus_rows": len(texts),
           "corpus_fingerprint": corpus_fingerprint(texts, pseudo), "pseudo_col": pseudo_col,
           "score_col": score_col, "design": design.to_dict(), "rows": rows.tolist(),
           "inclusion": design.inclusion[rows].tolist(), "strata": design.strata.tolist()}
    side = design_path(out)
    atomic_write_text(side, json.dumps(rec))
    return side


@dataclass
class LabeledDesign:
    rows: np.ndarray  # corpus rows of the labeled file's rows, in file order
    y: np.ndarray
    design: SamplingDesign
    notes: list


def read_labeled_design(ldf: pd.DataFrame, labeled: str | Path, texts, pseudo, *, text_col: str, label_col: str,
                        corpus: str | Path) -> LabeledDesign | None:
    """The labeled file's corpus rows, gold labels and design, or ``None`` when it has no ``row`` column or no
    side file (then it is a sample like any other, matched to the corpus by text)."""
    side = design_path(labeled)
    if "row" not in ldf.columns or not side.is_file():
        return None
    where = f"labeled file '{labeled}'"
    try:
        rec = json.loads(side.read_text(encoding="utf-8"))
        if rec.get("format") != FORMAT:
            raise ValueError(f"format {rec.get('format')!r}")
        d = rec["design"]
        strata = np.asarray(rec["strata"], dtype=np.int64)
        drawn = set(int(r) for r in rec["rows"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"design file '{side}' (beside {where}) is not a silr sample design: {e}") from None
    n = len(texts)
    if rec.get("corpus_rows") != n or strata.size != n:
        raise InputError(f"design file '{side}' was drawn from a corpus of {rec.get('corpus_rows')} rows, but corpus "
                         f"file '{corpus}' has {n}: refine with the corpus (and pseudo-labels) you sampled from")
    if rec.get("corpus_fingerprint") != corpus_fingerprint(texts, pseudo):
        raise InputError(f"design file '{side}' does not match corpus file '{corpus}': its texts or pseudo-labels "
                         "differ from the ones the sample was drawn from; refine with that corpus, or sample again")
    raw = ldf["row"]
    rows = pd.to_numeric(raw, errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isfinite(rows) | (rows != np.round(rows)) | (rows < 0) | (rows >= n))
    if bad.size:
        raise InputError(f"{where}: column 'row' must hold corpus row numbers 0..{n - 1}; lines "
                         f"{', '.join(str(i + 2) for i in bad[:5])} hold {raw.iloc[bad[:3]].tolist()}")
    rows = rows.astype(np.int64)
    dup = pd.Series(rows).duplicated().to_numpy()
    if dup.any():
        raise InputError(f"{where}: corpus rows appear twice (lines {', '.join(str(i + 2) for i in np.flatnonzero(dup)[:5])})")
    foreign = np.flatnonzero([r not in drawn for r in rows])
    if foreign.size:
        raise InputError(f"{where}: lines {', '.join(str(i + 2) for i in foreign[:5])} (corpus rows "
                         f"{rows[foreign[:5]].tolist()}) were not drawn by the design in '{side}'; the design's weights "
                         "hold only for the rows it drew (add rows with `silr sample --more`)")
    if text_col in ldf.columns:
        lt = ldf[text_col].astype(str).tolist()
        off = [i for i, r in enumerate(rows) if lt[i] != texts[r]]
        if off:
            raise InputError(f"{where}: the text on lines {', '.join(str(i + 2) for i in off[:5])} is not the corpus "
                             f"text of its row ({', '.join(str(rows[i]) for i in off[:5])}); the file was edited or the "
                             "corpus changed")
    lab = ldf[label_col]
    empty = np.flatnonzero(lab.isna().to_numpy() | (lab.astype(str).str.strip() == "").to_numpy())
    if empty.size:
        raise InputError(f"{where}: {empty.size} of {len(ldf)} rows have no label yet (lines "
                         f"{', '.join(str(i + 2) for i in empty[:8])}{' ...' if empty.size > 8 else ''}); fill column "
                         f"'{label_col}' with the gold label of every row `silr sample` chose")
    y = parse_binary_labels(lab, what=where, column=label_col).astype(np.int8)
    notes = []
    missing = len(drawn) - rows.size
    design = design_from_dict(d, strata, rows)
    H = design.alloc.size
    got = np.bincount(strata[rows], minlength=H)
    if missing:
        if (got[design.sizes > 0] < 2).any():
            raise InputError(f"{where}: {missing} of the {len(drawn)} drawn rows are missing, which leaves a stratum with "
                             "fewer than 2 labeled rows; label every drawn row")
        notes.append(f"{missing} of the {len(drawn)} rows the design drew are not in {where}; the weights use the "
                     "rows present (as if the missing ones were missing at random within their stratum)")
    design.alloc = got
    notes.append(f"labeled rows drawn by `silr sample` ({design_path(labeled).name}): estimates weighted by the "
                 f"design ({H} strata)")
    return LabeledDesign(rows, y, design, notes)


def drawn_inputs(drawn: LabeledDesign, cdf: pd.DataFrame, corpus, labeled, texts, pseudo, notes: list,
                 score_col: str | None):
    """:class:`silr.inputs.RefineInputs` for a labeled file drawn by ``silr sample``: the labeled rows are corpus
    rows (their pseudo-labels and scores are the corpus's), with the design."""
    from silr.inputs import RefineInputs
    from silr.io import parse_scores

    y = drawn.y
    if y.min() == y.max():
        raise InputError(f"labeled file '{labeled}': the labeled sample has one class only (every gold label is "
                         f"{int(y[0])}); the class priors need labeled positives and negatives")
    order = np.argsort(drawn.rows, kind="stable")  # corpus order, as the refiner sees them
    rows = drawn.rows[order]
    score = parse_scores(cdf[score_col], what=f"corpus file '{corpus}'", column=score_col) if score_col else None
    return RefineInputs(list(texts), pseudo, [texts[r] for r in rows], y[order], pseudo[rows].astype(np.int8),
                        notes + drawn.notes, str(corpus), str(labeled), score,
                        None if score is None else score[rows], labeled_rows=rows, design=drawn.design)


def design_inputs_from_annotation(annotated: pd.DataFrame, labeled: str | Path, keep: np.ndarray, *, text_col: str,
                                  label_col: str, pseudo_col: str, score_col: str | None, corpus: str | Path):
    """``silr run``'s inputs when its ``[labeled] file`` was drawn by ``silr sample``: the design is read back and
    checked against the run's own corpus and pseudo-labels (:func:`read_labeled_design`), as ``silr refine`` does.
    ``None`` when the file is not a drawn sample (no ``row`` column or no side file)."""
    from silr.io import clean_texts, read_table

    ldf = read_table(labeled, required=[label_col], what="labeled sample")
    if "row" not in ldf.columns or not design_path(labeled).is_file():
        return None
    if not np.asarray(keep, dtype=bool).all():
        raise InputError(f"labeled file '{labeled}' was drawn by `silr sample` from every corpus row, but the "
                         f"annotator abstained on {int((~np.asarray(keep, dtype=bool)).sum())} rows of corpus file "
                         f"'{corpus}'; refine the corpus you sampled from with `silr refine --labeled`")
    texts = clean_texts(annotated[text_col], what=f"corpus file '{corpus}'", column=text_col)
    pseudo = parse_binary_labels(annotated[pseudo_col], what=f"corpus file '{corpus}'", column=pseudo_col).astype(np.int8)
    drawn = read_labeled_design(ldf, labeled, texts, pseudo, text_col=text_col, label_col=label_col, corpus=corpus)
    return drawn_inputs(drawn, annotated, corpus, labeled, texts, pseudo, [], score_col)
