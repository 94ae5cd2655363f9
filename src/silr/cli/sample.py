"""``silr sample``: which corpus rows a human should label (a stratified design; silr.sampling)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import Failure

__all__ = ["sample"]


def sample(
    corpus: Path = typer.Argument(..., help="Corpus file (CSV, JSONL or Parquet) with a text and a pseudo-label column (e.g. `silr annotate`'s output)."),
    pseudo_col: str = typer.Option(..., "--pseudo-col", help="Column of the LLM's 0/1 labels (or scores with --threshold)."),
    out: Path = typer.Option(..., "--out", help="Output file: columns row (corpus row), text, label (empty: fill it in). The design goes to OUT.design.json."),
    n: int = typer.Option(50, "--n", min=4, help="Rows to label."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of the LLM's real-valued score (llm_score): strata by score bins inside each pseudo-label side."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Treat PSEUDO_COL as scores; label = score > THRESHOLD (as in `silr refine`)."),
    bins: Optional[int] = typer.Option(None, "--bins", min=1, help="Score bins per pseudo-label side (default 3 with --score-col)."),
    text_col: str = typer.Option("text", "--text-col", help="Text column."),
    label_col: str = typer.Option("label", "--label-col", help="Name of the (empty) gold label column written."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the draw."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT (and its design file)."),
    more: Optional[int] = typer.Option(None, "--more", min=1, help="After a run (--run DIR): add K rows where they shrink the uncertainty of the hand-back most (the rows the run changed); OUT keeps the labeled rows and their labels."),
    run: Optional[Path] = typer.Option(None, "--run", help="With --more: the run folder written by `silr refine` on this corpus."),
    labeled: Optional[Path] = typer.Option(None, "--labeled", help="With --more: the labeled file the run used (default: the one rounds.json names)."),
) -> None:
    """Choose the rows to label: stratified by pseudo-label and LLM-score bins, Neyman allocation.

    Label the rows in OUT (column LABEL_COL, 0/1 or the corpus's label words) and pass it to
    `silr refine --labeled OUT`: the refinement reads the design beside it and weights every estimate by it.
    """
    from silr.inputs import _pseudo_from_column
    from silr.io import clean_texts, parse_scores, read_table
    from silr.sampling.design import DesignError, make_design
    from silr.sampling.files import design_path, write_sample

    side = design_path(out)
    if not overwrite and (out.exists() or side.exists()):
        raise Failure(f"'{out if out.exists() else side}' exists; pass --overwrite to replace it (labels typed into "
                      "it would be lost)")
    cdf = read_table(corpus, required=[text_col, pseudo_col] + ([score_col] if score_col else []), what="corpus")
    texts = clean_texts(cdf[text_col], what=f"corpus file '{corpus}'", column=text_col)
    if threshold is None:  # K > 2 classes: the design's strata and estimators are binary
        from silr.multiclass.files import kclass_classes

        kc = kclass_classes(cdf[pseudo_col][cdf[pseudo_col].astype(str).str.strip() != ""])
        if kc is not None:
            raise Failure(f"corpus file '{corpus}': column '{pseudo_col}' holds {len(kc)} classes ({', '.join(kc[:8])}); "
                          "silr sample designs a labeled sample for two classes; for K classes label a uniform "
                          "random sample of the corpus rows (their texts and gold labels are the labeled file)")
    pseudo = _pseudo_from_column(cdf, corpus, pseudo_col, threshold)
    score = parse_scores(cdf[score_col], what=f"corpus file '{corpus}'", column=score_col) if score_col else None
    if more is not None or run is not None:
        if more is None or run is None:
            raise Failure("--more K and --run DIR go together: K more rows to label after the run in DIR")
        from silr.cli.sample_more import sample_more

        sample_more(corpus, cdf, texts, pseudo, run=run, labeled=labeled, k=more, out=out, seed=seed,
                    pseudo_col=pseudo_col, score_col=score_col, text_col=text_col, label_col=label_col)
        return
    try:
        design = make_design(pseudo, score, n=n, bins=bins, seed=seed)
    except DesignError as e:
        raise Failure(f"corpus file '{corpus}': {e}") from None
    side = write_sample(out, texts, pseudo, design, corpus=str(corpus), pseudo_col=pseudo_col, score_col=score_col,
                        text_col=text_col, label_col=label_col)
    for name, N_h, n_h in zip(design.labels, design.sizes, design.alloc):
        typer.echo(f"{name}: {n_h} of {N_h} rows (inclusion probability {n_h / N_h:.4f})", err=True)
    typer.echo(f"design: {side}", err=True)
    typer.echo(str(out))
