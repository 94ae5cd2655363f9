"""``silr refine``, ``silr predict``, ``silr evaluate``: refine pseudo-labels from files, use and score the run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import Failure

__all__ = ["refine", "predict", "evaluate", "print_round"]


def print_round(rec: dict) -> None:
    """One line per round on stderr: priors with intervals, the risk, the rows changed."""
    r = rec["round"]
    if "pi" not in rec:
        typer.echo(f"round {r}: rejected ({rec.get('rejected')})", err=True)
        return
    iv = rec.get("intervals", {})

    def f(k):
        lo, hi = iv.get(k, [float("nan")] * 2)
        return f"{rec[k]:.3f} [{lo:.3f}, {hi:.3f}]"

    extra = ""
    if r > 0:
        extra = f"  risk={rec['risk']} best_epoch={rec['best_epoch']} changed={rec['n_changed']} ({rec['seconds']:.1f}s)"
    g = rec.get("gain_over_round0")
    if g:
        extra += f"  gain vs round 0 {g['value']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]"
        if g.get("note") and r == 1:  # said once: it holds for every round's gain
            extra += f"\n  (gain: {g['note']})"
    status = f"  REJECTED: {rec['rejected']}" if rec.get("rejected") else ""
    typer.echo(
        f"round {r}: pseudo+ {rec['pseudo_positive_rate']:.3f}  pi {f('pi')}  theta_p {f('theta_p')}  "
        f"theta_n {f('theta_n')}  est.acc {f('accuracy')}{extra}{status}",
        err=True,
    )


def refine(
    corpus: Path = typer.Argument(..., help="Corpus file (CSV, JSONL or Parquet) with a text and a pseudo-label column."),
    pseudo_col: str = typer.Option(..., "--pseudo-col", help="Column of the corpus holding the LLM's 0/1 labels (or scores with --threshold); 3+ values (e.g. sports/politics/tech) run the K-class refinement."),
    labeled: Path = typer.Option(..., "--labeled", help="Labeled sample (text + gold label), about 50 rows. Its pseudo-labels come from its own PSEUDO_COL column or from the corpus rows with the same text."),
    out: Path = typer.Option(..., "--out", help="Output folder: labels.csv, rounds.json, model/, report.html."),
    text_col: str = typer.Option("text", "--text-col", help="Text column (both files)."),
    label_col: str = typer.Option("label", "--label-col", help="Gold label column of the labeled sample."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Maximum refinement rounds."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    backbone: str = typer.Option("minilm", "--backbone", help="minilm (default, English), e5 (multilingual), ngram (char/word n-grams), lora:MODEL_DIR (fine-tuned), st:MODEL_DIR."),
    risk: str = typer.Option("robust_uu", "--risk", help="Risk of round 1: robust_uu, uu, or pn (PN on pseudo-labels, a baseline)."),
    later_risk: str = typer.Option("uu", "--later-risk", help="Risk of rounds 2+ (robust_uu, uu, pn)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Treat PSEUDO_COL as real-valued scores; label = score > THRESHOLD."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of the LLM's real-valued score (e.g. llm_score from `silr annotate`): the final labels may then stack it with the refined classifier. K classes: the prefix of the per-class columns PREFIX<class> (llm_logp_)."),
    finetune: bool = typer.Option(False, "--finetune", help="Fine-tune all-MiniLM-L6-v2 end to end each round (silr.finetune.FineTuneLearner) instead of a head on frozen features (the labeled rows also train it only with --supervised-weight W > 0)."),
    supervised_weight: Optional[float] = typer.Option(None, "--supervised-weight", min=0.0, max=1.0, help="Weight w of the supervised risk on the labeled rows: (1-w) corpus risk + w labeled risk (default 0; with w > 0 the labeled rows that train the learner also choose what is handed back)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder (default $SILR_CACHE_DIR or ~/.cache/silr)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray cluster: features stored out of core, head trained by streaming, corpus scored shard by shard; needs pip install 'silr\\[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: auto (the running cluster) or ray://HOST:PORT; default: start a local cluster."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --engine ray: actors per pool (default: one per CPU of the cluster)."),
    rows_per_shard: int = typer.Option(50000, "--rows-per-shard", min=1, help="With --engine ray: rows per shard."),
) -> None:
    """Refine pseudo-labels with robust UU learning, round after round, and save labels, priors and model."""
    from silr.inputs import load_refine_inputs
    from silr.run_folder import prepare_out_dir, write_run
    from silr.texts import refine_texts

    from silr.engine import resolve_engine
    from silr.risks import CORPUS_RISKS

    for opt, value in (("--risk", risk), ("--later-risk", later_risk)):  # before any file is read
        if value not in CORPUS_RISKS:
            raise typer.BadParameter(f"{opt} must be one of {', '.join(CORPUS_RISKS)}, got {value!r}")
    eng = resolve_engine(engine, ray_address, workers=workers, rows_per_shard=rows_per_shard)
    prepare_out_dir(out, overwrite=overwrite)
    from silr.cli.kclass import kclass_refine_needed, refine_as_kclass
    from silr.io import InputError

    kw = dict(pseudo_col=pseudo_col, label_col=label_col, threshold=threshold)
    try:  # K > 2 classes in the labeled file or the pseudo-label column: the K-class path (silr.multiclass)
        kclasses = kclass_refine_needed(corpus, labeled, corpus_failed=False, **kw)
        if kclasses is None:
            inputs = load_refine_inputs(corpus, labeled, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col, threshold=threshold, score_col=score_col)
    except InputError:
        kclasses = kclass_refine_needed(corpus, labeled, corpus_failed=True, **kw)
        if kclasses is None:
            raise
    if kclasses is not None:
        refine_as_kclass(kclasses, corpus, labeled, out, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col,
                         score_col=score_col, rounds=rounds, seed=seed, backbone=backbone, risk=risk,
                         later_risk=later_risk, finetune=finetune, supervised_weight=supervised_weight, engine=engine,
                         cache_dir=cache_dir, no_report=no_report, quiet=quiet)
        return
    fixed = None if inputs.llm_score is None else _fixed_llm_threshold(corpus, len(inputs.texts), pseudo_col, threshold)
    if fixed:  # the round-0 labels are a fixed cut of the scores: judged as given, as `silr run` does
        inputs.llm_threshold_fitted = False
        inputs.notes.append(f"the pseudo-labels are {fixed}, not fitted on the labeled rows: their round-0 labels "
                            "are judged as given")
    if not quiet:
        for n in inputs.notes:
            typer.echo(f"note: {n}", err=True)
    from silr.finetune import refine_learner_params

    run_refine = refine_texts
    if eng.is_ray:
        from functools import partial

        from silr.engine.ray_refine import refine_texts_ray

        run_refine = partial(refine_texts_ray, engine=eng)
    result = run_refine(
        inputs, backbone=backbone, rounds=rounds, seed=seed, progress=not quiet, cache_dir=cache_dir,
        on_round=None if quiet else print_round, risk=risk, later_risk=later_risk,
        **refine_learner_params(finetune, supervised_weight, progress=not quiet),
    )
    write_run(result, out, report=not no_report)
    s = result.summary
    typer.echo(f"final labels: {s['final_source']} ({s['selection']})", err=True)
    typer.echo(f"stop: {s['stop_reason']}", err=True)
    typer.echo(str(out))


def _fixed_llm_threshold(corpus: Path, n_rows: int, pseudo_col: str, threshold: float | None) -> str | None:
    """How the pseudo-labels cut the LLM's scores when that cut was not fitted on the labeled rows: ``--threshold``
    given here, or ``silr annotate``'s record beside the corpus (CORPUS.annotation.json, same rows, its
    ``pseudo_label`` column) saying 'prior' or a fixed number. None when fitted ('accuracy') or not known."""
    import json

    from silr.annotate.calibrate import fitted_on_labeled

    if threshold is not None:
        return f"'{pseudo_col}' cut at --threshold {threshold:g}"
    side = Path(str(corpus) + ".annotation.json")
    if pseudo_col != "pseudo_label" or not side.is_file():
        return None
    try:
        record = json.loads(side.read_text())
        method, rows = record["threshold"]["method"], record["counts"]["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if rows != n_rows or fitted_on_labeled(record["threshold"]):
        return None
    how = "the labeled rows' positive rate ('prior')" if method == "prior" else f"{record['threshold'].get('value')}"
    return f"cut at {how} by `silr annotate` ({side.name})"


def predict(
    run_dir: Path = typer.Argument(..., help="A run folder written by `silr refine` (or its model/ folder)."),
    input: Path = typer.Argument(..., help="File of texts to score (CSV, JSONL or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Output file: INPUT's columns plus score, label and proba."),
    text_col: str = typer.Option("text", "--text-col", help="Text column of INPUT."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of INPUT with the LLM's score, used when the run handed back the stack of LLM and refined scores. K classes: a column of LLM labels, or the prefix of per-class score columns PREFIX<class> (llm_logp_)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray cluster: features stored out of core, head trained by streaming, corpus scored shard by shard; needs pip install 'silr\\[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: auto (the running cluster) or ray://HOST:PORT; default: start a local cluster."),
) -> None:
    """Score new texts with a saved model: `score` (higher = positive), `label` (0/1), `proba` (K classes:
    `label` = the class name and `proba_<class>` per class)."""
    from silr.io import clean_texts, read_table, write_table
    from silr.run_folder import predict_texts

    df = read_table(input, required=[text_col], what="input")
    texts = clean_texts(df[text_col], what=f"input file '{input}'", column=text_col)
    from silr.io import parse_scores
    from silr.multiclass.persist import is_kclass_model

    if is_kclass_model(run_dir):  # K > 2 classes: label = class name, proba_<class> per class
        from silr.cli.kclass import run_kclass_predict

        return run_kclass_predict(run_dir, df, texts, out, input=input, score_col=score_col, quiet=quiet,
                                  engine=engine)
    if score_col and score_col not in df.columns:
        raise Failure(f"input file '{input}' has no column '{score_col}'")
    llm = parse_scores(df[score_col], what=f"input file '{input}'", column=score_col) if score_col else None
    from silr.engine import resolve_engine

    eng = resolve_engine(engine, ray_address)
    if eng.is_ray:
        from silr.engine.ray_predict import predict_on_ray

        pred = predict_on_ray(eng, run_dir, texts, llm_score=llm)
    else:
        pred = predict_texts(run_dir, texts, progress=not quiet, llm_score=llm)
    from silr.run_folder import with_predictions

    df, kept = with_predictions(df, pred)
    write_table(df, out)
    for k in kept if not quiet else []:
        typer.echo(f"note: {k}", err=True)
    note = None if llm is not None else stack_without_llm_note(run_dir, "--score-col COL")
    if note and not quiet:
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(out))


def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    gold: Path = typer.Option(..., "--gold", help="Gold labels for the corpus rows, in corpus order (column --label-col)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Optional held-out test file (text, label) scored with the saved model."),
    label_col: str = typer.Option("label", "--label-col"),
    text_col: str = typer.Option("text", "--text-col"),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of the --test file with the LLM's score (or labels): the evidence a stack hand-back needs, as in `silr predict --score-col` (K classes: a column of LLM labels or the per-class prefix PREFIX<class>)."),
) -> None:
    """Score a finished run against held-out gold labels (never used by the run itself)."""
    from silr.multiclass.files import is_kclass_run
    from silr.run_folder import evaluate_run

    if is_kclass_run(run_dir):  # K > 2 classes: accuracy per round and the confusion matrix (evaluation.json)
        from silr.cli.kclass import run_kclass_evaluate

        if score_col is not None and test is None:
            raise typer.BadParameter("--score-col is a column (or K-class prefix) of the --test file; give --test FILE")
        run_kclass_evaluate(run_dir, gold, label_col=label_col, test=test, text_col=text_col, test_score_col=score_col)
        return

    if score_col is not None and test is None:
        raise typer.BadParameter("--score-col is a column of the --test file; give --test FILE")
    ev = evaluate_run(run_dir, gold, label_col=label_col, text_col=text_col, test=test, test_score_col=score_col)
    for pr in ev["per_round"]:
        typer.echo(f"round {pr['round']}: accuracy {pr['accuracy']:.4f}  f1 {pr['f1']:.4f}")
    typer.echo(f"final labels: accuracy {ev['final_accuracy']:.4f} (gain over round 0: {ev['gain_over_round_0']:+.4f})")
    if "test" in ev:
        typer.echo(f"test set: accuracy {ev['test']['accuracy']:.4f} on {ev['test']['n']} rows")
        note = None if score_col else stack_without_llm_note(run_dir, "--score-col COL (a column of the test file)")
        if note:
            typer.echo(f"note (test set): {note}", err=True)


def stack_without_llm_note(run_dir: Path, remedy: str) -> str | None:
    """What `silr predict` (and `silr evaluate --test`) should say when the run handed back a stack of the LLM's
    evidence and the refined classifier but the new texts come without that evidence: the refined classifier
    alone scores them, a different model from the one whose labels the run handed back. None otherwise (also
    when the backbone is the labeling LLM, which gives its own evidence)."""
    import json

    d = Path(run_dir)
    model = d / "model" if (d / "model").is_dir() else d
    try:
        config = json.loads((model / "config.json").read_text())
        backbone = json.loads((model / "backbone.json").read_text())
    except (OSError, ValueError):
        return None
    stack = config.get("stack") or {}
    if config.get("final_source") != "stack" or not stack.get("refined", True) or backbone.get("name") == "llm":
        return None
    used = f" (column '{stack['input']}' in the run)" if stack.get("input") else ""
    try:  # the candidates' records, when the run folder (not just model/) was given
        record = json.loads((model.parent / "rounds.json").read_text())
    except (OSError, ValueError):
        record = {}
    cand = record.get("candidates") or {}
    right = ""
    if "n_right" in cand.get("refined", {}) and "n_right" in cand.get("stack", {}):
        n = config.get("n_labeled") or record.get("n_labeled")
        right = (f"; on the {n} labeled rows it was right on {cand['refined']['n_right']}, the stack on "
                 f"{cand['stack']['n_right']}")
    return (f"the run's final labels are a stack of the LLM's evidence{used} and the refined classifier, but these "
            f"texts come without the LLM's evidence, so the refined classifier (round "
            f"{config.get('predict_round')}) alone scores them{right}; give the texts' LLM scores or labels "
            f"with {remedy} to use the stack")
