"""``silr sample --more K --run DIR``: K more rows to label after a run (:mod:`silr.sampling.more`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from silr.cli.errors import Failure

__all__ = ["sample_more"]


def _labeled_rows(ldf, labeled, texts, pseudo, *, text_col, label_col, corpus):
    """Corpus rows, labels and strata (with names) of the labeled file: its design's, or the pseudo-label sides
    for a uniform sample matched to the corpus by text."""
    from silr.io import InputError, parse_binary_labels
    from silr.sampling.files import read_labeled_design

    drawn = read_labeled_design(ldf, labeled, texts, pseudo, text_col=text_col, label_col=label_col, corpus=corpus)
    if drawn is not None:
        return drawn.rows, ldf[label_col].tolist(), drawn.design.strata, drawn.design.labels, drawn.design.after_run
    parse_binary_labels(ldf[label_col], what=f"labeled file '{labeled}'", column=label_col)
    first: dict = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
    lt = ldf[text_col].astype(str).tolist()
    missing = [i for i, t in enumerate(lt) if t not in first]
    if missing:
        raise InputError(f"labeled file '{labeled}': the text on lines {', '.join(str(i + 2) for i in missing[:5])} "
                         f"is not in corpus file '{corpus}'")
    rows = np.array([first[t] for t in lt], dtype=np.int64)
    return rows, ldf[label_col].tolist(), np.asarray(pseudo, dtype=np.int64), ["pseudo 0", "pseudo 1"], None


def sample_more(corpus, cdf, texts, pseudo, *, run: Path, labeled, k: int, out: Path, seed: int, pseudo_col: str,
                score_col, text_col: str, label_col: str) -> None:
    from silr.io import read_table
    from silr.sampling.design import DesignError
    from silr.sampling.files import write_sample
    from silr.sampling.more import more_rows

    lab_csv, rounds_json = run / "labels.csv", run / "rounds.json"
    if not lab_csv.is_file() or not rounds_json.is_file():
        raise Failure(f"'{run}' is not a finished run folder (no labels.csv / rounds.json)")
    if labeled is None:
        named = (json.loads(rounds_json.read_text()).get("inputs") or {}).get("labeled")
        if not named or not Path(named).is_file():
            raise Failure(f"the run in '{run}' names labeled file {named!r}, which is not here; pass --labeled FILE")
        labeled = Path(named)
    runlab = read_table(lab_csv, required=["round_0", "final"], what="run labels")
    if len(runlab) != len(texts):
        raise Failure(f"the run in '{run}' labeled {len(runlab)} corpus rows, but corpus file '{corpus}' has "
                      f"{len(texts)}: pass the corpus the run refined")
    changed = runlab["final"].to_numpy() != runlab["round_0"].to_numpy()
    ldf = read_table(labeled, required=[text_col, label_col], what="labeled sample")
    rows, labels, strata, names, after_run = _labeled_rows(ldf, labeled, texts, pseudo, text_col=text_col, label_col=label_col,
                                                corpus=corpus)
    try:
        new_rows, design = more_rows(rows, strata, changed, k, seed=seed, names=names, after_run=after_run)
    except DesignError as e:
        raise Failure(f"corpus file '{corpus}': {e}") from None
    known = {int(r): lab for r, lab in zip(rows, labels)}
    side = write_sample(out, texts, pseudo, design, corpus=str(corpus), pseudo_col=pseudo_col, score_col=score_col,
                        text_col=text_col, label_col=label_col, known=known)
    n_ch = int(changed[new_rows].sum())
    typer.echo(f"{len(new_rows)} rows added ({n_ch} of them changed by the run; {int(changed.sum())} corpus rows "
               f"changed, {int(changed[rows].sum())} of them labeled before); fill their empty '{label_col}' cells",
               err=True)
    typer.echo(f"design: {side}", err=True)
    typer.echo(str(out))


