"""``silr bench``: the benchmark suite (the lead registers :func:`bench` on the main typer app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from silr.cli.errors import print_error

__all__ = ["bench"]


def _split(s: Optional[str]) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def bench(
    quick: bool = typer.Option(False, "--quick", help="CI smoke run: Rotten Tomatoes (package), 1,500 rows, 1 seed, "
                               "70% class-conditional noise; fails unless silr beats the pseudo-labels."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated data sets (default: all)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    tracks: str = typer.Option("noise,llm", "--tracks", help="noise (controlled noise) and/or llm (stored Gemma scores)."),
    noise: str = typer.Option("cc70,cc60,id70,id60", "--noise", help="Noise settings: cc|id + accuracy percent."),
    out: Path = typer.Option(Path("benchmarks"), "--out", help="Folder for RESULTS.md, results/ and plots/."),
    max_corpus: int = typer.Option(3000, "--max-corpus", help="Corpus cap per data set (stratified sample)."),
    max_test: int = typer.Option(1000, "--max-test", help="Test-split cap per data set."),
    silr_params: Optional[str] = typer.Option(None, "--silr-params", help='JSON of SelfIterativeRefiner parameters (default {"epochs": 20}).'),
    speed: bool = typer.Option(True, "--speed/--no-speed", help="Also time 5 rounds over 10k/100k/1M random rows."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated subset of the methods."),
) -> None:
    """Benchmark silr against the baselines on real data sets (controlled noise and real LLM labels)."""
    from silr.bench.data import DEFAULT_DATASETS
    from silr.bench.methods import METHODS
    from silr.bench.runner import RunConfig
    from silr.bench.suite import run_benchmark, run_quick

    from silr.bench.runner import BENCH_SILR

    params = json.loads(silr_params) if silr_params else dict(BENCH_SILR)

    def log(msg: str) -> None:
        typer.echo(msg, err=True)

    if quick:
        res = run_quick(out, log=log, silr_params=params)
        typer.echo(f"quick benchmark: {out / 'RESULTS_quick.md'} ({res['seconds']:.0f}s)")
        if res["problems"]:
            for p in res["problems"]:
                print_error(p)
            raise typer.Exit(1)
        return
    ds = _split(datasets) or list(DEFAULT_DATASETS)
    ms = _split(methods) or list(METHODS)
    bad = [m for m in ms if m not in METHODS]
    if bad:
        raise typer.BadParameter(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}", param_hint="--methods")
    cfg = RunConfig(datasets=ds, seeds=[int(x) for x in _split(seeds)], tracks=_split(tracks), noise=_split(noise),
                    methods=ms, max_corpus=max_corpus, max_test=max_test, silr_params=params, out=out)
    res = run_benchmark(cfg, speed_sizes=(10_000, 100_000, 1_000_000) if speed else (), log=log)
    typer.echo(f"benchmark: {out / 'RESULTS.md'} ({res['seconds']:.0f}s, {len(res['records'])} runs)")


if __name__ == "__main__":  # python -m silr.bench.cli
    typer.run(bench)
