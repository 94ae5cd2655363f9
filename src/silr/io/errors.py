"""The one error type for bad user input, and how messages cite rows."""

from __future__ import annotations

__all__ = ["InputError", "MAX_LISTED", "ROW_CONVENTION"]

#: How many offending rows / values an error message lists before summarising the rest as a count.
MAX_LISTED = 5

ROW_CONVENTION = "row numbers as in a spreadsheet: header = row 1, first data row = row 2"


class InputError(ValueError):
    """A problem with user-supplied input (a file, a column or some rows of it).

    The message is meant for the end user: it names the file (or what was being read), the column and the
    offending rows, and where possible says how to fix the problem.
    """

