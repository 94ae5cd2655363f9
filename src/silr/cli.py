"""The ``silr`` command line.

Exit codes: 0 success, 1 failure (a clear one-line message, no traceback), 2 usage error,
130 interrupted (caches stay consistent; rerun to resume).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    name="silr",
    help="Self-Iterative Label Refinement: turn an LLM's noisy labels and ~50 human labels into a better "
    "classifier and refined labels (robust unlabeled-unlabeled learning, Asano et al., NeurIPS 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Failure(Exception):
    """A failure reported to the user as one line (exit code 1)."""


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler so that click does not turn it into a plain 'Aborted!'."""


def _on_sigint(signum, frame):
    raise Interrupted()


def _err(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)


def _print_round(rec: dict) -> None:
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
    status = f"  REJECTED: {rec['rejected']}" if rec.get("rejected") else ""
    typer.echo(
        f"round {r}: pseudo+ {rec['pseudo_positive_rate']:.3f}  pi {f('pi')}  theta_p {f('theta_p')}  "
        f"theta_n {f('theta_n')}  est.acc {f('accuracy')}{extra}{status}",
        err=True,
    )


@app.command()
def refine(
    corpus: Path = typer.Argument(..., help="Corpus file (CSV, JSONL or Parquet) with a text and a pseudo-label column."),
    pseudo_col: str = typer.Option(..., "--pseudo-col", help="Column of the corpus holding the LLM's 0/1 labels (or scores with --threshold)."),
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
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of the LLM's real-valued score (e.g. llm_score from `silr annotate`): the final labels may then stack it with the refined classifier."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder (default $SILR_CACHE_DIR or ~/.cache/silr)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Refine pseudo-labels with robust UU learning, round after round, and save labels, priors and model."""
    from silr.pipeline import load_refine_inputs, prepare_out_dir, refine_texts, write_run

    prepare_out_dir(out, overwrite=overwrite)
    inputs = load_refine_inputs(corpus, labeled, pseudo_col=pseudo_col, text_col=text_col, label_col=label_col, threshold=threshold, score_col=score_col)
    if not quiet:
        for n in inputs.notes:
            typer.echo(f"note: {n}", err=True)
    result = refine_texts(
        inputs, backbone=backbone, rounds=rounds, seed=seed, progress=not quiet, cache_dir=cache_dir,
        on_round=None if quiet else _print_round, risk=risk, later_risk=later_risk,
    )
    write_run(result, out, report=not no_report)
    s = result.summary
    typer.echo(f"final labels: {s['final_source']} ({s['selection']})", err=True)
    typer.echo(f"stop: {s['stop_reason']}", err=True)
    typer.echo(str(out))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder written by `silr refine` (or its model/ folder)."),
    input: Path = typer.Argument(..., help="File of texts to score (CSV, JSONL or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Output file: INPUT's columns plus score, label and proba."),
    text_col: str = typer.Option("text", "--text-col", help="Text column of INPUT."),
    score_col: Optional[str] = typer.Option(None, "--score-col", help="Column of INPUT with the LLM's score, used when the run handed back the stack of LLM and refined scores."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Score new texts with a saved model: `score` (higher = positive), `label` (0/1), `proba`."""
    from silr.io import clean_texts, read_table, write_table
    from silr.pipeline import predict_texts

    df = read_table(input, required=[text_col], what="input")
    texts = clean_texts(df[text_col], what=f"input file '{input}'", column=text_col)
    from silr.io import parse_scores

    if score_col and score_col not in df.columns:
        raise Failure(f"input file '{input}' has no column '{score_col}'")
    llm = parse_scores(df[score_col], what=f"input file '{input}'", column=score_col) if score_col else None
    pred = predict_texts(run_dir, texts, progress=not quiet, llm_score=llm)
    for c in pred.columns:
        df[c] = pred[c].to_numpy()
    write_table(df, out)
    typer.echo(str(out))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    gold: Path = typer.Option(..., "--gold", help="Gold labels for the corpus rows, in corpus order (column --label-col)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Optional held-out test file (text, label) scored with the saved model."),
    label_col: str = typer.Option("label", "--label-col"),
    text_col: str = typer.Option("text", "--text-col"),
) -> None:
    """Score a finished run against held-out gold labels (never used by the run itself)."""
    from silr.pipeline import evaluate_run

    ev = evaluate_run(run_dir, gold, label_col=label_col, text_col=text_col, test=test)
    for pr in ev["per_round"]:
        typer.echo(f"round {pr['round']}: accuracy {pr['accuracy']:.4f}  f1 {pr['f1']:.4f}")
    typer.echo(f"final labels: accuracy {ev['final_accuracy']:.4f} (gain over round 0: {ev['gain_over_round_0']:+.4f})")
    if "test" in ev:
        typer.echo(f"test set: accuracy {ev['test']['accuracy']:.4f} on {ev['test']['n']} rows")


def _print_summary_table(summary: dict) -> None:
    """The per-round table: estimated priors with intervals and, when gold was given, true accuracy."""
    from rich.console import Console
    from rich.table import Table

    ev = summary.get("evaluation") or {}
    gold = {pr["round"]: pr["accuracy"] for pr in ev.get("per_round", [])}
    t = Table(title="silr: per round (priors and accuracy estimated from the 50 labeled rows; gold = held-out)")
    for col in ("round", "pseudo+", "pi", "theta_p", "theta_n", "est. accuracy", "gold accuracy"):
        t.add_column(col, justify="right")

    def ci(rec, k):
        if k not in rec:
            return "-"
        lo, hi = rec["intervals"][k]
        return f"{rec[k]:.3f} [{lo:.2f}, {hi:.2f}]"

    for rec in summary["rounds"]:
        if rec.get("rejected"):
            continue
        r = rec["round"]
        src = summary.get("final_source")
        mark = " *" if r == summary["final_round"] and src in ("llm", "refined", None) else ""
        t.add_row(
            f"{r}{mark}", f"{rec['pseudo_positive_rate']:.3f}", ci(rec, "pi"), ci(rec, "theta_p"), ci(rec, "theta_n"),
            ci(rec, "accuracy"), f"{gold[r]:.3f}" if r in gold else "-",
        )
    src = summary.get("final_source")
    if src in ("stack", "probe"):
        cand = (summary.get("candidates") or {}).get(src, {})
        t.add_row(
            f"{src} *", "-", "-", "-", "-",
            f"{cand.get('labeled_accuracy', float('nan')):.3f} (out-of-fold)",
            f"{ev['final_accuracy']:.3f}" if ev else "-",
        )
    console = Console(width=140)
    console.print(t)
    console.print(f"* final labels: {summary.get('final_source')} — {summary['selection']}")
    if ev:
        console.print(
            f"LLM labels (round 0): {gold.get(0, float('nan')):.3f}   silr final labels: {ev['final_accuracy']:.3f}   "
            f"gain: {ev['gain_over_round_0'] * 100:+.1f} points"
        )


@app.command("run")
def run_config(
    config: Path = typer.Argument(..., help="Config file (TOML or YAML): data, labeled sample, annotator, backbone, rounds."),
    out: Path = typer.Option(..., "--out", help="Output folder for everything the run writes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run the whole pipeline from one config: annotate, refine, evaluate (when gold is given), report."""
    from silr.runner import load_config, run_pipeline

    cfg = load_config(config)
    summary = run_pipeline(cfg, out, overwrite=overwrite, progress=not quiet,
                           echo=lambda m: typer.echo(m, err=True), on_round=None if quiet else _print_round)
    _print_summary_table(summary)
    typer.echo(str(out))


@app.command()
def demo(
    out: Path = typer.Option(Path("silr-demo"), "--out", help="Output folder (replaced if it holds an earlier demo)."),
    n: int = typer.Option(2000, "--n", min=200, help="Corpus size (Rotten Tomatoes snippets)."),
    seed: int = typer.Option(0, "--seed"),
    rounds: int = typer.Option(5, "--rounds", min=1),
    backbone: str = typer.Option("llm", "--backbone",
                                 help="Features: 'llm' (Gemma's own hidden state under the prompt, computed in the "
                                      "labeling pass) or an encoder ('minilm', 'e5', 'ngram')."),
) -> None:
    """Run silr end to end on an embedded real data set: Gemma-3-270M labels Rotten Tomatoes snippets,
    50 rows get their gold labels, robust UU refines the rest; accuracy is checked on held-out gold."""
    import time as _time

    from silr.backbones.cache import default_cache_dir
    from silr.io import write_table
    from silr.runner import demo_config, run_pipeline

    t0 = _time.perf_counter()
    cfg, df = demo_config(n_corpus=n, seed=seed)
    cfg.refine.rounds = rounds
    cfg.refine.backbone = backbone
    base = default_cache_dir() / "demo"
    base.mkdir(parents=True, exist_ok=True)
    write_table(df, base / f"corpus-{n}-{seed}.csv")
    cfg.data.corpus = f"corpus-{n}-{seed}.csv"
    cfg.base_dir = str(base)
    marker = out / ".silr-demo"
    overwrite = marker.exists() or not out.exists() or not any(out.iterdir())
    if not overwrite:
        raise Failure(f"'{out}' is not empty and is not an earlier demo folder; choose another --out")
    feats = "Gemma's hidden states" if backbone == "llm" else backbone
    typer.echo(f"silr demo: {len(df)} Rotten Tomatoes snippets, Gemma-3-270M 4-shot labels, 50 gold-labeled rows, "
               f"features: {feats}", err=True)
    summary = run_pipeline(cfg, out, overwrite=True, echo=lambda m: typer.echo(m, err=True), on_round=_print_round)
    (out / ".silr-demo").write_text("written by `silr demo`\n")
    _print_summary_table(summary)
    typer.echo(f"wall time {_time.perf_counter() - t0:.0f} s; everything is in {out}/ (report.html, labels.csv, rounds.json, model/)")


def _register_optional() -> None:
    """Commands that live in their own modules (kept import-light for fast `--help`)."""
    from silr.annotate.cli import annotate

    app.command("annotate")(annotate)
    from silr.align_cli import align, reward

    app.command("reward")(reward)
    app.command("align")(align)
    try:
        from silr.bench.cli import bench
    except ImportError:  # pragma: no cover - the benchmark package is part of the source tree
        return
    app.command("bench")(bench)


_register_optional()


def main() -> None:
    """Entry point: usage errors exit 2 (click), user-facing failures exit 1 with one line, Ctrl-C exits 130."""
    from silr.io import InputError
    from silr.priors import PriorEstimationError
    from silr.refine import RefinementError

    import signal

    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        app()
    except (KeyboardInterrupt, Interrupted):
        _err("interrupted; finished work is cached and no output was half-written. Rerun the same command to resume.")
        sys.exit(130)
    except (InputError, RefinementError, PriorEstimationError, Failure, FileNotFoundError, ValueError) as e:
        _err(str(e))
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":  # pragma: no cover
    main()
