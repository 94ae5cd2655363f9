"""``silr kclass annotate | refine | evaluate``: aliases of ``silr annotate | refine | evaluate`` for K > 2 classes.

The ordinary commands detect K classes themselves (``--label-words a,b,c`` or a prompt file with 3+ label words;
3+ values in the pseudo-label column or the labeled file; a K-class run folder) and call the same functions
(:mod:`silr.multiclass.files`); these aliases keep the K-class options' earlier names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import Failure

kclass_app = typer.Typer(help="K-class labeling (more than two classes): aliases of silr annotate/refine/evaluate, "
                              "which detect K classes themselves.", no_args_is_help=True)


@kclass_app.command("annotate")
def annotate(
    corpus: Path = typer.Argument(..., help="File of texts (CSV, JSONL or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Output file: the input's columns plus llm_label and llm_logp_<word> per class."),
    label_words: Optional[str] = typer.Option(None, "--label-words", help="K comma-separated label words in class order, e.g. sports,politics,tech."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="Instruction text (with --label-words)."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Prompt file (TOML/JSON: instruction, label_words = [...], template)."),
    text_col: str = typer.Option("text", "--text-col"),
    model: str = typer.Option("gemma-3-270m", "--model", help="gemma-3-270m (local, default) or a local transformers model folder."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_text_tokens: int = typer.Option(256, "--max-text-tokens", min=1),
    center: bool = typer.Option(False, "--center", help="Label by the argmax after subtracting each class's mean log-probability over the corpus (label-free calibration of a model that leans to one word); the llm_logp_* columns stay raw."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Label every text with one of K label words (argmax of the K normalised log-probabilities)."""
    from silr.multiclass.annotate import kprompt_from_words, load_kprompt

    if (label_words is None) == (prompt is None):
        raise Failure("give either --label-words a,b,c (with --instruction) or --prompt FILE")
    spec = load_kprompt(prompt) if prompt is not None else kprompt_from_words(label_words, instruction)
    run_kclass_annotate(corpus, out, spec, text_col=text_col, model=model, batch_size=batch_size,
                        max_text_tokens=max_text_tokens, center=center, cache_dir=cache_dir, quiet=quiet)


def run_kclass_annotate(corpus: Path, out: Path, spec, *, text_col: str, model: str, batch_size: int,
                        max_text_tokens: int, center: bool, cache_dir, quiet: bool, limit: int | None = None,
                        server: dict | None = None, shots_from=None, shots: int = 0, seed: int = 0) -> None:
    """The K-class annotation of a file (``silr annotate`` with 3+ label words, ``silr kclass annotate``)."""
    import json

    from silr.io import atomic_write_text, read_table, write_table
    from silr.multiclass.files import annotate_kclass

    if out.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        raise Failure(f"output file '{out}' needs a .csv, .tsv, .jsonl, .json or .parquet suffix")
    df = read_table(corpus, required=[text_col], what="corpus")
    if limit:
        df = df.iloc[:limit].reset_index(drop=True)

    def progress(done, total):
        if not quiet:
            typer.echo(f"scored {done}/{total}", err=True)

    df_out, record = annotate_kclass(df, text_col, spec, model=model, what=f"corpus file '{corpus}'",
                                     cache_dir=cache_dir, batch_size=batch_size, max_text_tokens=max_text_tokens,
                                     center=center, on_batch=progress, server=server, shots_from=shots_from,
                                     shots=shots, seed=seed)
    write_table(df_out, out)
    record.update(input=str(corpus), output=str(out))
    atomic_write_text(Path(str(out) + ".annotation.json"), json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    n_cut = record["counts"]["truncated"]
    if n_cut and not quiet:
        typer.echo(f"note: {n_cut} texts were truncated to fit the prompt limits", err=True)
    n_abst = record["counts"].get("abstained", 0)
    if n_abst and not quiet:
        typer.echo(f"note: the server's answer named no label word for {n_abst} texts: their llm_label is empty "
                   "(silr refine and silr run leave those rows out; a labeled text among them is an error)", err=True)
    for note in record.get("shots", {}).get("notes", []):
        if not quiet:
            typer.echo(f"note: {note}", err=True)
    if not quiet:
        per = ", ".join(f"{w} {n}" for w, n in record["counts"]["per_class"].items())
        typer.echo(f"annotated {record['counts']['rows']} rows with {spec.K} label words ({per}) -> {out}", err=True)
    typer.echo(str(out))


def run_kclass_refine(corpus: Path, labeled: Path, out: Path, *, pseudo_col: str, text_col: str, label_col: str,
                      score_prefix: str | None, rounds: int, seed: int, backbone: str, cache_dir, quiet: bool,
                      report: bool = True) -> dict:
    """The K-class refinement of files (``silr refine`` on K > 2 classes, ``silr kclass refine``)."""
    from silr.io import read_table
    from silr.multiclass.files import labeled_only_note, left_out_note, print_kround, refine_kclass

    df = read_table(corpus, required=[text_col, pseudo_col], what="corpus")
    ldf = read_table(labeled, required=[text_col, label_col], what="labeled")
    summary = refine_kclass(df, ldf, out, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col,
                            score_prefix=score_prefix, rounds=rounds, seed=seed, backbone=backbone,
                            cache_dir=cache_dir, progress=not quiet, report=report, corpus=str(corpus),
                            labeled=str(labeled), on_round=None if quiet else print_kround)
    for note in (left_out_note(summary), labeled_only_note(summary)):
        if note:
            typer.echo(note, err=True)
    if not quiet:
        typer.echo(f"final labels: {summary['final_source']} ({summary['selection']})", err=True)
    typer.echo(str(out))
    return summary


@kclass_app.command("refine")
def refine(
    corpus: Path = typer.Argument(..., help="Corpus file with a text column and the LLM's label column."),
    pseudo_col: str = typer.Option("llm_label", "--pseudo-col", help="Column with the LLM's label (any K values)."),
    labeled: Path = typer.Option(..., "--labeled", help="Labeled sample (text + gold label); its texts must be corpus rows."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels.csv, rounds.json, report.md, report.html."),
    text_col: str = typer.Option("text", "--text-col"),
    label_col: str = typer.Option("label", "--label-col"),
    score_prefix: Optional[str] = typer.Option(None, "--score-prefix", help="Columns PREFIX<class> with the LLM's per-class log-probabilities (e.g. llm_logp_ from `silr annotate`)."),
    rounds: int = typer.Option(5, "--rounds", min=1),
    seed: int = typer.Option(0, "--seed"),
    backbone: str = typer.Option("minilm", "--backbone", help="minilm (default), e5, ngram, st:MODEL_DIR."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Refine K-class LLM labels with the T-corrected robust risk, round after round."""
    from silr.run_folder import prepare_out_dir

    prepare_out_dir(out, overwrite=overwrite)
    run_kclass_refine(corpus, labeled, out, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col,
                      score_prefix=score_prefix, rounds=rounds, seed=seed, backbone=backbone, cache_dir=cache_dir,
                      quiet=quiet)


def run_kclass_evaluate(run_dir: Path, gold: Path, *, label_col: str, test: Path | None = None,
                        text_col: str = "text", test_score_col: str | None = None) -> dict:
    """The K-class evaluation step (``silr evaluate`` on a K-class run folder, ``silr kclass evaluate``)."""
    from silr.multiclass.files import evaluate_kclass

    ev = evaluate_kclass(run_dir, gold, label_col=label_col, test=test, text_col=text_col,
                         test_score_col=test_score_col)
    for pr in ev["per_round"]:
        if pr["round"] == 0 and "round0_calibrated_accuracy" in ev:  # per_round[0] is the LLM's own labels
            typer.echo(f"LLM labels: accuracy {pr['accuracy']:.4f}")
            typer.echo(f"round 0 (the LLM's scores calibrated on the labeled rows): accuracy "
                       f"{ev['round0_calibrated_accuracy']:.4f}")
            continue
        typer.echo(f"round {pr['round']}: accuracy {pr['accuracy']:.4f}")
    typer.echo(f"final labels: accuracy {ev['final_accuracy']:.4f} on {ev['n']} rows")
    if ev.get("gold_classes_not_in_run"):
        other = ", ".join(f"{c!r} ({n} rows)" for c, n in ev["gold_classes_not_in_run"].items())
        typer.echo(f"note: gold class(es) the run does not have, counted as wrong: {other}", err=True)
    if "test" in ev:
        typer.echo(f"test set: accuracy {ev['test']['accuracy']:.4f} on {ev['test']['n']} rows "
                   f"(scored by {ev['test']['scored_by']})")
    return ev


@kclass_app.command("evaluate")
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished K-class run folder."),
    gold: Path = typer.Option(..., "--gold", help="Held-out gold labels of the corpus rows, in corpus order (column --label-col)."),
    label_col: str = typer.Option("label", "--label-col"),
    test: Optional[Path] = typer.Option(None, "--test", help="Held-out test file (text + gold label): the saved model's accuracy on it."),
    text_col: str = typer.Option("text", "--text-col", help="Text column of --test."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="With --test: the test rows' LLM evidence (a label column or the per-class score prefix), as silr evaluate."),
) -> None:
    """Evaluation step: score the run's labels per round against held-out gold (never used by the run)."""
    run_kclass_evaluate(run_dir, gold, label_col=label_col, test=test, text_col=text_col, test_score_col=score_col)


def _column(path: Path, col: str, what: str):
    from silr.io import read_table

    try:
        return read_table(path, required=[col], what=what)[col]
    except (ValueError, OSError):
        return None  # the binary path reports what is wrong with the file


def _binary_pseudo_labels(corpus: Path, pseudo_col: str) -> bool:
    """The corpus's pseudo-labels (empty cells, abstentions, left out) are binary in a spelling silr reads."""
    from silr.multiclass.files import is_binary_labels

    pseudo = _column(corpus, pseudo_col, "corpus")
    if pseudo is None:
        return False
    return is_binary_labels(pseudo[pseudo.astype(str).str.strip() != ""])


def kclass_refine_needed(corpus: Path, labeled: Path, *, pseudo_col: str, label_col: str, threshold,
                         corpus_failed: bool) -> list[str] | None:
    """`silr refine`'s dispatch: the K > 2 class names found in the labeled file (checked first: it is small) or,
    once the binary reading of the corpus failed, in its pseudo-label column when the labeled file's labels are
    not binary (:func:`silr.multiclass.files.kclass_pseudo_classes`); None keeps the binary path."""
    from silr.multiclass.files import kclass_classes, kclass_pseudo_classes

    if threshold is not None:
        return None
    lab = _column(labeled, label_col, "labeled sample")
    if lab is None:  # the labeled file is unreadable, empty or lacks --label-col: the path that reads it says so
        if not corpus_failed:
            return None
        pseudo = _column(corpus, pseudo_col, "corpus")  # K > 2 LLM labels: the K-class path names the labeled file
        return None if pseudo is None else kclass_classes(pseudo[pseudo.astype(str).str.strip() != ""])
    if not corpus_failed:
        found = kclass_classes(lab)
    else:
        pseudo = _column(corpus, pseudo_col, "corpus")
        found = None if pseudo is None else kclass_pseudo_classes(pseudo, lab)
    if found is not None and _binary_pseudo_labels(corpus, pseudo_col):
        return None  # 0/1 pseudo-labels: a stray gold value (a typo) is the binary path's error, by row
    return found


def refine_as_kclass(classes, corpus: Path, labeled: Path, out: Path, *, pseudo_col: str, text_col: str,
                     label_col: str, score_col: str | None, rounds: int, seed: int, backbone: str, risk: str,
                     later_risk: str, finetune: bool, supervised_weight, engine: str, cache_dir, no_report: bool,
                     quiet: bool) -> None:
    """`silr refine` on K > 2 classes: the options that are binary-only are refused by name."""
    for bad, opt in ((finetune or None, "--finetune"), (supervised_weight, "--supervised-weight"),
                     (engine != "local" or None, "--engine ray"), (risk != "robust_uu" or None, f"--risk {risk}"),
                     (later_risk != "uu" or None, f"--later-risk {later_risk}")):
        if bad is not None:
            raise Failure(f"{opt} is for two classes; the pseudo-labels/labeled file hold {len(classes)} classes "
                          f"({', '.join(classes)}), refined by the K-class path (robust T-corrected risk, local engine)")
    if not quiet:
        typer.echo(f"note: {len(classes)} classes ({', '.join(classes)}): K-class refinement", err=True)
    run_kclass_refine(corpus, labeled, out, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col,
                      score_prefix=score_col, rounds=rounds, seed=seed, backbone=backbone, cache_dir=cache_dir,
                      quiet=quiet, report=not no_report)


def run_kclass_predict(run_dir: Path, df, texts, out: Path, *, input: Path, score_col: str | None, quiet: bool,
                       engine: str = "local") -> None:
    """`silr predict` with a K-class model: INPUT's columns plus ``label`` (the class name) and ``proba_<class>``.
    ``--score-col`` gives the new rows' LLM evidence for a stack: a column of LLM labels or a per-class prefix."""
    import json

    from silr.io import write_table
    from silr.multiclass.persist import evidence_mismatch, kclass_evidence
    from silr.run_folder import predict_texts

    if engine != "local":
        raise Failure("--engine ray is for two classes; a K-class model predicts locally")
    d = Path(run_dir)
    config = json.loads(((d / "model" if (d / "model").is_dir() else d) / "config.json").read_text())
    llm = None
    if score_col:
        llm = kclass_evidence(df, score_col, config["classes"], what=f"input file '{input}'")
        bad = evidence_mismatch(config, labels_given=score_col in df.columns, column=score_col)
        if bad:
            raise Failure(bad)
    elif not quiet:
        if config["final_source"] in ("stack", "llm"):
            typer.echo("note: the run handed back the LLM's labels or the stack; without --score-col the refined "
                       "classifier (or the probe) scores the texts alone", err=True)
    pred = predict_texts(run_dir, texts, progress=not quiet, llm_score=llm)
    from silr.run_folder import with_predictions

    df, kept = with_predictions(df, pred)
    write_table(df, out)
    for k in kept if not quiet else []:
        typer.echo(f"note: {k}", err=True)
    typer.echo(str(out))
