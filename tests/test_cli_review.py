"""Defects found by walking the README as a new user: what the command line prints, and bad input."""

import numpy as np
import pandas as pd
import pytest

from cliutil import silr_inproc  # noqa: E402


def _columns_of_printed_table(monkeypatch, summary):
    """The cells of `silr run`'s per-round table, by column header."""
    from rich.console import Console
    from rich.table import Table

    from silr.cli.run import _print_summary_table

    tables = []
    monkeypatch.setattr(Console, "print", lambda self, obj="", *a, **k: tables.append(obj)
                        if isinstance(obj, Table) else None)
    _print_summary_table(summary)
    (t,) = tables
    return {c.header: list(c._cells) for c in t.columns}


def test_run_table_puts_the_stack_accuracy_under_est_accuracy_not_under_the_gain(monkeypatch):
    """The hand-back row (stack/probe) shows its out-of-fold labeled accuracy in the "est. accuracy" column; the
    "est. gain vs round 0" column holds gains only (it showed 0.740, an accuracy, as a gain)."""
    base = {"pseudo_positive_rate": 0.5, "pi": 0.5, "theta_p": 0.8, "theta_n": 0.2, "accuracy": 0.8,
            "intervals": {k: [0.4, 0.9] for k in ("pi", "theta_p", "theta_n", "accuracy")}}
    rounds = [{**base, "round": 0}, {**base, "round": 1, "gain_over_round0": {"value": 0.02, "low": -0.05,
                                                                             "high": 0.09}}]
    summary = {"rounds": rounds, "final_round": 1, "final_source": "stack", "selection": "kept",
               "candidates": {"stack": {"labeled_accuracy": 0.74}},
               "evaluation": {"per_round": [{"round": 0, "accuracy": 0.7}, {"round": 1, "accuracy": 0.8}],
                              "final_accuracy": 0.82, "gain_over_round_0": 0.12}}
    cols = _columns_of_printed_table(monkeypatch, summary)
    assert cols["round"][-1] == "stack *"
    assert cols["est. accuracy"][-1] == "0.740 (out-of-fold)"
    assert cols["est. gain vs round 0"][-1] == "-"
    assert cols["gold accuracy"][-1] == "0.820"
    assert all(len(v) == 3 for v in cols.values())
