"""The command line's one error handler: a user-facing failure is one red line and exit code 1.

Every command runs its work inside :func:`reported` (the entry point :func:`silr.cli.main` does it for all of
them; a command that holds a secret, the annotator's API key, does it itself to redact it), so a bad file,
column or row, a failed annotation or an impossible refinement never shows a traceback.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NoReturn

import typer

__all__ = ["Failure", "Interrupted", "print_error", "fail", "user_errors", "reported"]


class Failure(Exception):
    """A failure reported to the user as one line (exit code 1)."""


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler so that click does not turn it into a plain 'Aborted!'."""


def print_error(msg: object, *, redact: str | None = None) -> None:
    """``error: MSG`` on stderr, on one line; ``redact`` (a secret) is replaced by ``***``."""
    text = " ".join(str(msg).split())
    if redact:
        text = text.replace(redact, "***")
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)


def fail(msg: object, *, redact: str | None = None) -> NoReturn:
    print_error(msg, redact=redact)
    raise SystemExit(1)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input or the environment is wrong", not "silr has a bug".

    ``ValueError`` covers :class:`silr.io.InputError`, :class:`silr.refine.RefinementError` and
    :class:`silr.priors.PriorEstimationError`; ``OSError`` a missing or unwritable file.
    """
    from silr.annotate.types import AnnotationError

    return (ValueError, OSError, AnnotationError, Failure)


@contextlib.contextmanager
def reported(*, redact: str | None = None) -> Iterator[None]:
    """Turn a user error raised in the block into one line and exit code 1."""
    try:
        yield
    except user_errors() as e:
        fail(str(e) or type(e).__name__, redact=redact)
