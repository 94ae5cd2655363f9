"""Which corpus rows a human should label: a stratified design with Neyman allocation from corpus-only quantities.

Strata are the LLM's pseudo-label crossed with quantile bins of its score inside each side (the pseudo-label
alone when there is no score). The allocation minimises the variance of the stratified estimators of
``theta_p``, ``theta_n``, ``pi`` and the accuracy (:mod:`silr.sampling.estimators`) as far as the corpus can
tell without a gold label: each stratum's spread of the gold label is guessed from the LLM score
(``q = sigmoid((score - t) / sd)``, ``t`` the pseudo-labels' cut; rows near the cut are the uncertain ones),
and Neyman's rule ``n_h ~ N_h S_h`` is applied inside each pseudo-label side. The two sides share the budget
half-way between an even split (``theta_p`` and ``theta_n`` matter equally to the UU weights) and the overall
Neyman split. Every stratum gets at least two rows (a within-stratum variance needs two).

Rows are drawn without replacement inside each stratum; row ``i`` of stratum ``h`` is labeled with
probability ``n_h / N_h`` (its inclusion probability; the design weight is the inverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SamplingDesign", "DesignError", "stratify", "neyman_allocation", "make_design", "uniform_design", "design_from_dict"]

#: smallest per-stratum spread the allocation assumes (the score's guess of a stratum's purity can be wrong)
MIN_SPREAD = 0.15


class DesignError(ValueError):
    """The design cannot be built or does not match its corpus."""


@dataclass
class SamplingDesign:
    """A stratified sample of corpus rows: the stratum of every corpus row and the rows drawn.

    ``strata[i]`` is corpus row ``i``'s stratum, ``rows`` the drawn corpus rows (sorted), ``sizes[h]``
    ``N_h`` and ``alloc[h]`` ``n_h``. ``kind`` is ``"stratified"`` (drawn by :func:`make_design`) or
    ``"uniform"`` (a simple random sample, post-stratified by the estimators).
    """

    strata: np.ndarray
    rows: np.ndarray
    sizes: np.ndarray
    alloc: np.ndarray
    kind: str = "stratified"
    seed: int | None = None
    labels: list | None = None  # a readable name per stratum
    #: corpus rows labeled after a run (``silr sample --more``): they never set the LLM threshold
    after_run: np.ndarray | None = None

    @property
    def n_corpus(self) -> int:
        return int(self.strata.size)

    @property
    def inclusion(self) -> np.ndarray:
        """Inclusion probability of every corpus row (``n_h / N_h`` of its stratum)."""
        return (self.alloc / np.maximum(self.sizes, 1))[self.strata]

    def to_dict(self) -> dict:
        """A JSON-able record (the side file of ``silr sample``), without the per-row strata."""
        return {"kind": self.kind, "seed": self.seed, "n_corpus": self.n_corpus, "n": int(self.rows.size),
                "sizes": self.sizes.tolist(), "alloc": self.alloc.tolist(), "labels": self.labels,
                **({} if self.after_run is None else {"after_run": np.asarray(self.after_run).tolist()})}


def _cut(pseudo: np.ndarray, score: np.ndarray) -> float:
    """The score cut between the two pseudo-label sides (the midpoint when the labels are a threshold)."""
    lo, hi = score[pseudo == 0], score[pseudo == 1]
    if lo.size and hi.size and lo.max() <= hi.min():
        return float((lo.max() + hi.min()) / 2)
    return float((np.median(lo) + np.median(hi)) / 2) if lo.size and hi.size else float(np.median(score))


def stratify(pseudo, score=None, *, bins: int = 3) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Strata of the corpus: pseudo-label x ``bins`` score-quantile bins per side (ranked by distance from the
    cut, nearest first). Returns ``(strata, names, q)``; ``q`` is the score's corpus-only guess of
    ``P(y = 1)`` per row (0.5 +- a margin; the pseudo-label's side alone without a score)."""
    s = np.asarray(pseudo).astype(np.int64)
    if score is None:
        q = np.where(s == 1, 0.75, 0.25)
        return s.copy(), ["pseudo 0", "pseudo 1"], q
    x = np.asarray(score, dtype=np.float64)
    t = _cut(s, x)
    sd = float(np.std(x)) or 1.0
    q = 1.0 / (1.0 + np.exp(-(x - t) / sd))
    strata = np.zeros(s.size, dtype=np.int64)
    names = []
    h = 0
    for side in (0, 1):
        idx = np.flatnonzero(s == side)
        dist = np.abs(x[idx] - t)
        k = max(1, min(bins, idx.size // 2))
        order = np.argsort(dist, kind="stable")
        for j, part in enumerate(np.array_split(order, k)):
            strata[idx[part]] = h
            names.append(f"pseudo {side}, score bin {j + 1}/{k} from the cut")
            h += 1
    return strata, names, q


def neyman_allocation(strata: np.ndarray, side: np.ndarray, q: np.ndarray, n: int, *, min_per: int = 2) -> np.ndarray:
    """Rows per stratum: ``n_h ~ N_h S_h`` inside each side, sides between even and Neyman (module docstring)."""
    H = int(strata.max()) + 1
    N = np.bincount(strata, minlength=H).astype(np.float64)
    S = np.array([max(np.sqrt(np.mean(q[strata == h]) * (1 - np.mean(q[strata == h]))), MIN_SPREAD) if N[h] else 0.0
                  for h in range(H)])
    h_side = np.array([int(np.round(np.mean(side[strata == h]))) if N[h] else 0 for h in range(H)])
    if n < min_per * int((N > 0).sum()):
        raise DesignError(f"a budget of {n} rows cannot give {min_per} rows to each of {(N > 0).sum()} strata; "
                          "use fewer score bins or label more rows")
    ney = N * S
    side_ney = np.array([ney[h_side == k].sum() for k in (0, 1)])
    share = 0.5 * np.array([0.5, 0.5]) + 0.5 * side_ney / max(side_ney.sum(), 1e-12)
    want = np.zeros(H)
    for k in (0, 1):
        m = h_side == k
        if ney[m].sum() > 0:
            want[m] = n * share[k] * ney[m] / ney[m].sum()
    alloc = np.minimum(np.maximum(np.floor(want), np.minimum(min_per, N)), N).astype(np.int64)
    # hand out what is left by largest remainder (never above N_h), or take back from the largest
    while alloc.sum() < n:
        room = alloc < N
        if not room.any():
            break
        gap = np.where(room, want - alloc, -np.inf)
        alloc[int(np.argmax(gap))] += 1
    while alloc.sum() > n:
        over = np.where(alloc > min_per, alloc - want, -np.inf)
        alloc[int(np.argmax(over))] -= 1
    return alloc


def make_design(pseudo, score=None, *, n: int = 50, bins: int | None = None, seed: int = 0) -> SamplingDesign:
    """Draw a stratified sample of ``n`` corpus rows (module docstring). ``bins``: score bins per side
    (default 3 with a score, at most ``n // 8``)."""
    s = np.asarray(pseudo).astype(np.int64)
    if s.ndim != 1 or s.size == 0:
        raise DesignError("the pseudo-labels must be a non-empty 1-D array")
    if not np.isin(s, (0, 1)).all():
        raise DesignError("the pseudo-labels must be 0/1")
    if n > s.size:
        raise DesignError(f"cannot sample {n} rows from a corpus of {s.size}")
    if s.min() == s.max():
        raise DesignError(f"every pseudo-label is {int(s[0])}: there is one side only to sample from")
    if bins is None:
        bins = 3 if score is not None else 1
    bins = max(1, min(int(bins), n // 8))
    strata, names, q = stratify(s, score, bins=bins)
    alloc = neyman_allocation(strata, s, q, n)
    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(strata == h), size=int(alloc[h]), replace=False)
                                   for h in range(alloc.size)]))
    sizes = np.bincount(strata, minlength=alloc.size)
    return SamplingDesign(strata, rows, sizes, alloc, "stratified", seed, names)


def uniform_design(n_corpus: int, rows, post_strata=None) -> SamplingDesign:
    """A simple random sample of ``rows``, post-stratified by ``post_strata`` (e.g. the current pseudo-label):
    each post-stratum's realised count is its ``n_h`` (the estimators condition on it)."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    strata = np.zeros(n_corpus, dtype=np.int64) if post_strata is None else np.asarray(post_strata).astype(np.int64)
    H = int(strata.max()) + 1
    sizes = np.bincount(strata, minlength=H)
    alloc = np.bincount(strata[rows], minlength=H)
    return SamplingDesign(strata, rows, sizes, alloc, "uniform", None, None)


def design_from_dict(d: dict, strata: np.ndarray, rows: np.ndarray) -> SamplingDesign:
    """Rebuild a design from its record and per-row strata (see :func:`silr.sampling.files`)."""
    return SamplingDesign(np.asarray(strata, dtype=np.int64), np.sort(np.asarray(rows, dtype=np.int64)),
                          np.asarray(d["sizes"], dtype=np.int64), np.asarray(d["alloc"], dtype=np.int64),
                          d.get("kind", "stratified"), d.get("seed"), d.get("labels"),
                          None if d.get("after_run") is None else np.asarray(d["after_run"], dtype=np.int64))

