"""The silr benchmark suite: real data sets, real and controlled pseudo-label noise, baselines, speed.

Run it with ``silr bench`` (or ``python -m silr.bench.cli``); ``--quick`` is the CI smoke run.
"""
