"""Progress display for long steps (rich), silent when disabled or not attached to a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(k)``; shows a rich progress bar on stderr when enabled.

    When stderr is not a terminal (CI, logs), a line is printed at start and at the end instead.
    """
    if not enabled:
        yield lambda k: None
        return
    if not sys.stderr.isatty():
        print(f"{description}: {total} items ...", file=sys.stderr, flush=True)
        yield lambda k: None
        print(f"{description}: done", file=sys.stderr, flush=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda k: prog.advance(task, k)
