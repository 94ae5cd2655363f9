"""``silr run`` (the whole job from one config file) and ``silr demo`` (the same job on an embedded data set)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import Failure
from silr.cli.refine import print_round

__all__ = ["run", "demo"]


def _print_summary_table(summary: dict) -> None:
    """The per-round table: estimated priors with intervals and, when gold was given, true accuracy."""
    from rich.console import Console
    from rich.table import Table

    ev = summary.get("evaluation") or {}
    gold = {pr["round"]: pr["accuracy"] for pr in ev.get("per_round", [])}
    if len(summary.get("classes") or ()) > 2:
        return _print_kclass_table(summary, ev, gold)
    t = Table(title="silr: per round (priors and accuracy estimated from the 50 labeled rows; gold = held-out)")
    for col in ("round", "pseudo+", "pi", "theta_p", "theta_n", "est. accuracy", "est. gain vs round 0", "gold accuracy"):
        t.add_column(col, justify="right")

    def gain(rec):  # "did refinement help?" (silr.sampling): paired on the labeled rows, powered by the corpus
        g = rec.get("gain_over_round0")
        return f"{g['value']:+.3f} [{g['low']:+.2f}, {g['high']:+.2f}]" if g else "-"

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
            ci(rec, "accuracy"), gain(rec), f"{gold[r]:.3f}" if r in gold else "-",
        )
    src = summary.get("final_source")
    if src in ("stack", "probe"):
        cand = (summary.get("candidates") or {}).get(src, {})
        t.add_row(  # its labeled accuracy (out of fold) under "est. accuracy"; it has no gain estimate
            f"{src} *", "-", "-", "-", "-",
            f"{cand.get('labeled_accuracy', float('nan')):.3f} (out-of-fold)", "-",
            f"{ev['final_accuracy']:.3f}" if ev else "-",
        )
    console = Console(width=140)
    console.print(t)
    _print_selection(console, summary)
    if ev:
        console.print(
            f"LLM labels (round 0): {gold.get(0, float('nan')):.3f}   silr final labels: {ev['final_accuracy']:.3f}   "
            f"gain: {ev['gain_over_round_0'] * 100:+.1f} points"
        )


def _print_selection(console, summary: dict) -> None:
    """What was handed back and why, and the caveat on the estimated gain when there is one."""
    from silr.sampling.refit import gain_note

    console.print(f"* final labels: {summary.get('final_source')} — {summary['selection']}")
    note = gain_note(summary["rounds"])
    if note:
        console.print(f"est. gain: {note}")


def _print_kclass_table(summary: dict, ev: dict, gold: dict) -> None:
    """The K-class per-round table: estimated accuracy with its interval, cond(T), rows changed, gold accuracy."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"silr: {len(summary['classes'])} classes, per round (T and accuracy estimated from the "
                    f"{summary['n_labeled']} labeled rows; gold = held-out)")
    for col in ("round", "est. accuracy", "cond(T)", "changed", "gold accuracy"):
        t.add_column(col, justify="right")
    llm_acc = gold.get(0, float("nan"))
    if "round0_calibrated_accuracy" in ev:  # round 0 is the LLM's scores calibrated on the labeled rows, not its labels
        gold = {**gold, 0: ev["round0_calibrated_accuracy"]}
    for rec in summary["rounds"]:
        if "T" not in rec:
            continue
        r = rec["round"]
        lo, hi = rec["accuracy_interval"]
        mark = " *" if r == summary["final_round"] and summary.get("final_source") in ("llm", "refined") else ""
        t.add_row(f"{r}{mark}", f"{rec['accuracy']:.3f} [{lo:.2f}, {hi:.2f}]", f"{rec['condition']:.1f}",
                  str(rec.get("n_changed") if rec.get("n_changed") is not None else "-"),
                  f"{gold[r]:.3f}" if r in gold else "-")
    console = Console(width=140)
    console.print(t)
    _print_selection(console, summary)
    if ev:
        cal = (f"   round 0 (the LLM's scores calibrated on the labeled rows): {gold[0]:.3f}"
               if "round0_calibrated_accuracy" in ev else "")
        console.print(f"LLM labels{'' if cal else ' (round 0)'}: {llm_acc:.3f}{cal}   silr final labels: "
                      f"{ev['final_accuracy']:.3f}   gain: "
                      f"{(ev['final_accuracy'] - llm_acc) * 100:+.1f} points")


def run(
    config: Path = typer.Argument(..., help="Config file (TOML or YAML): data, labeled sample, annotator, backbone, rounds."),
    out: Path = typer.Option(..., "--out", help="Output folder for everything the run writes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    engine: Optional[str] = typer.Option(None, "--engine", help="local or ray; overrides the config's \\[engine] kind (ray needs pip install 'silr\\[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With the ray engine: auto or ray://HOST:PORT (overrides \\[engine] address)."),
) -> None:
    """Run the whole pipeline from one config: annotate, refine, evaluate (when gold is given), report."""
    from silr.job import load_config, run_job

    cfg = load_config(config)
    eng = None
    if engine is not None or ray_address is not None:
        from silr.engine import resolve_engine

        e = cfg.engine
        eng = resolve_engine(engine or e.kind, ray_address if ray_address is not None else (e.address or None),
                             workers=e.workers or None, rows_per_shard=e.rows_per_shard)
    summary = run_job(cfg, out, overwrite=overwrite, progress=not quiet, engine=eng,
                      echo=lambda m: typer.echo(m, err=True), on_round=None if quiet else print_round)
    _print_summary_table(summary)
    typer.echo(str(out))


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

    from silr.job import prepare_demo, run_job

    t0 = _time.perf_counter()
    cfg, n_rows = prepare_demo(n_corpus=n, seed=seed, rounds=rounds, backbone=backbone)
    marker = out / ".silr-demo"
    overwrite = marker.exists() or not out.exists() or not any(out.iterdir())
    if not overwrite:
        raise Failure(f"'{out}' is not empty and is not an earlier demo folder; choose another --out")
    feats = "Gemma's hidden states" if backbone == "llm" else backbone
    typer.echo(f"silr demo: {n_rows} Rotten Tomatoes snippets, Gemma-3-270M 4-shot labels, 50 gold-labeled rows, "
               f"features: {feats}", err=True)
    summary = run_job(cfg, out, overwrite=True, echo=lambda m: typer.echo(m, err=True), on_round=print_round)
    (out / ".silr-demo").write_text("written by `silr demo`\n")
    _print_summary_table(summary)
    typer.echo(f"wall time {_time.perf_counter() - t0:.0f} s; everything is in {out}/ (report.html, labels.csv, rounds.json, model/)")
