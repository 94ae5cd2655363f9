"""Progress display for long steps (rich), silent when disabled or not attached to a terminal."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["progress_bar"]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _LineProgress:
    """Progress as plain lines (stderr not a terminal): one at start, one every ``interval`` seconds with count,
    rate and ETA (and ``status()``, e.g. retries so far), one at the end."""

    def __init__(self, description: str, total: int, interval: float, status: Callable[[], str] | None,
                 clock: Callable[[], float] = time.monotonic):
        self.description, self.total, self.interval, self.status, self.clock = description, total, interval, status, clock
        self.done = 0
        self.t0 = self.last = clock()

    def _extra(self) -> str:
        return f", {self.status()}" if self.status is not None else ""

    def start(self) -> None:
        print(f"{self.description}: {self.total} items ...", file=sys.stderr, flush=True)

    def advance(self, k: int) -> None:
        self.done += k
        now = self.clock()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.description}: {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%), "
                  f"{rate:.2f}/s, ETA {_duration(eta) if eta != float('inf') else '?'}{self._extra()}",
                  file=sys.stderr, flush=True)

    def finish(self) -> None:
        secs = self.clock() - self.t0
        print(f"{self.description}: done, {self.done} in {_duration(secs)}"
              f" ({self.done / max(secs, 1e-9):.2f}/s){self._extra()}", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True, interval: float = 30.0,
                 status: Callable[[], str] | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(k)``; shows a rich progress bar on stderr when enabled.

    When stderr is not a terminal (CI, logs), plain lines instead: at the start, every ``interval`` seconds
    (count, rate, ETA and ``status()``), and at the end.
    """
    if not enabled:
        yield lambda k: None
        return
    if not sys.stderr.isatty():
        lines = _LineProgress(description, total, interval, status)
        lines.start()
        yield lines.advance
        lines.finish()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda k: prog.advance(task, k)
