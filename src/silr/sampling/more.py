"""``silr sample --more K --run DIR``: the next K rows to label after a run, where they shrink the uncertainty of
the hand-back decision most.

The hand-back compares round 0's labels with the handed-back ones, and the two differ only on the rows the run
changed: the gain's variance comes from those rows alone. The labeled rows so far (drawn by a design, or uniformly)
are post-stratified by (their stratum, changed by the run or not); inside each cell they are a simple random sample
given its count, and so is the union with rows added uniformly from the cell's unlabeled rows. The K new rows go to
the changed cells (a stratum is split only where both parts have at least ``MIN_PART`` rows) by the greedy
Neyman rule for the gain (each next row to the cell whose variance term
``N_c^2 / n_c`` drops most), after every cell has two labeled rows. The union is written as a new design.
"""

from __future__ import annotations

import numpy as np

from silr.sampling.design import DesignError, SamplingDesign

__all__ = ["more_rows"]

#: a stratum's changed or unchanged part smaller than this is not a cell of its own
MIN_PART = 4


def more_rows(labeled_rows, strata, changed, k: int, *, seed: int = 0, names: list | None = None,
              after_run=None) -> tuple[np.ndarray, SamplingDesign]:
    """``(new rows, design of all labeled rows)``: ``k`` more corpus rows to label (module docstring).

    ``labeled_rows``: corpus rows labeled so far; ``strata``: their design's strata of every corpus row (the
    pseudo-label for a uniform sample); ``changed``: whether the run's handed-back label differs from round 0's;
    ``after_run``: rows of ``labeled_rows`` already added after an earlier run. The design records the new rows and
    those as labeled after a run (``after_run``): they did not set the LLM threshold, so a rerun judges round 0
    on them as given, not out of fold."""
    lab = np.asarray(labeled_rows, dtype=np.int64)
    strata = np.asarray(strata, dtype=np.int64)
    ch = np.asarray(changed, dtype=bool)
    # a stratum is split by "changed" only when both parts can hold a few labeled rows
    split = np.array([min(np.sum(ch & (strata == s)), np.sum(~ch & (strata == s))) >= MIN_PART
                      for s in range(int(strata.max()) + 1)])
    cell_raw = strata * 2 + (ch & split[strata]).astype(np.int64)
    ids, cell = np.unique(cell_raw, return_inverse=True)
    H = ids.size
    N = np.bincount(cell, minlength=H)
    n = np.bincount(cell[lab], minlength=H)
    is_changed = (ids % 2) == 1
    free = N - n
    if k > int(free.sum()):
        raise DesignError(f"only {int(free.sum())} corpus rows are not labeled yet; cannot add {k}")
    add = np.zeros(H, dtype=np.int64)
    left = k
    for c in np.argsort(-N):  # two labeled rows in every cell first (a within-cell variance needs two)
        need = min(max(0, 2 - n[c]), free[c], left)
        add[c] += need
        left -= need
    while left > 0:
        have = n + add
        gain = np.where(is_changed & (add < free), N.astype(float) ** 2 / np.maximum(have, 1) / (have + 1), -1.0)
        if gain.max() < 0:  # every changed row is labeled: the rest by the corpus share of each cell
            gain = np.where(add < free, N / np.maximum(have + 1, 1), -1.0)
        c = int(np.argmax(gain))
        add[c] += 1
        left -= 1
    rng = np.random.default_rng(seed)
    taken = np.zeros(strata.size, dtype=bool)
    taken[lab] = True
    new = [rng.choice(np.flatnonzero((cell == c) & ~taken), size=int(add[c]), replace=False)
           for c in range(H) if add[c]]
    new_rows = np.sort(np.concatenate(new)) if new else np.zeros(0, dtype=np.int64)
    rows = np.sort(np.concatenate([lab, new_rows]))
    base = names or [f"stratum {int(s)}" for s in range(int(strata.max()) + 1)]
    labels = [f"{base[int(i) // 2]}, {'changed' if i % 2 else 'unchanged'} by the run" for i in ids]
    later = np.union1d(np.zeros(0, np.int64) if after_run is None else np.asarray(after_run, np.int64), new_rows)
    design = SamplingDesign(cell.astype(np.int64), rows, N, np.bincount(cell[rows], minlength=H), "stratified",
                            seed, labels, later.astype(np.int64))
    return new_rows, design
