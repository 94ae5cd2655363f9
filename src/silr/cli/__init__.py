"""The ``silr`` command line: one Typer app, one environment set-up, one error handler.

Exit codes: 0 success, 1 failure (a clear one-line message, no traceback), 2 usage error,
130 interrupted (caches stay consistent; rerun to resume).
"""

from __future__ import annotations

import signal
import sys

import typer

from silr.env import use_local_models

use_local_models()

from silr.cli.errors import Failure, Interrupted, print_error, reported  # noqa: E402

__all__ = ["app", "main", "Failure"]

app = typer.Typer(
    name="silr",
    help="Self-Iterative Label Refinement: turn an LLM's noisy labels and ~50 human labels into a better "
    "classifier and refined labels (robust unlabeled-unlabeled learning, Asano et al., NeurIPS 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    """Every command, in pipeline order (each module stays import-light for a fast ``--help``)."""
    from silr.cli.align import align, reward
    from silr.cli.annotate import annotate
    from silr.cli.refine import evaluate, predict, refine
    from silr.cli.run import demo, run
    from silr.cli.sample import sample

    app.command("annotate")(annotate)
    app.command("sample")(sample)
    app.command("refine")(refine)
    app.command("predict")(predict)
    app.command("evaluate")(evaluate)
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("reward")(reward)
    app.command("align")(align)
    from silr.cli.kclass import kclass_app

    app.add_typer(kclass_app, name="kclass")  # K > 2 classes (silr.multiclass)
    try:
        from silr.bench.cli import bench
    except ImportError:  # pragma: no cover - the benchmark package is part of the source tree
        return
    app.command("bench")(bench)


_register()


def _on_sigint(signum, frame):
    raise Interrupted()


def main() -> None:
    """Entry point: usage errors exit 2 (click), user-facing failures exit 1 with one line, Ctrl-C exits 130."""
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        with reported():
            app()
    except (KeyboardInterrupt, Interrupted):
        print_error("interrupted; finished work is cached and no output was half-written. Rerun the same command to resume.")
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, previous)
