"""The refinement rounds that :mod:`silr.refine` runs (:func:`run_rounds`) and their pieces: a fresh learner from
the template, the running score, the stack relabeling, and the round's record."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from silr.learners import HeadLearner
from silr.priors import PriorEstimate, PriorEstimationError, check_usable, estimate_priors
from silr.risks import UUWeights
from silr.selection import design_sample_weight, stack_candidate

__all__ = ["StopReason", "HEAD_PARAMS", "refiner_from_params", "default_learner", "new_learner", "prior_estimator",
           "train_round", "RunningScore", "aggregated_score", "stack_relabel", "round_record", "RoundsOutcome",
           "run_rounds"]


class StopReason(StrEnum):
    """Why the loop ended (``stop_reason_``; the sentence is ``stop_detail_``)."""

    COMPLETED = "completed"  # every planned round ran
    CONVERGED = "converged"  # a round changed no corpus label
    ROUND_REJECTED = "round_rejected"  # a round's labels could not drive another round (they are not kept)
    NOT_STARTED = "not_started"  # round 0's priors could not start a refinement


#: the head's settings, refiner parameters before ``learner`` became one (:func:`refiner_from_params` takes them)
HEAD_PARAMS = ("hidden", "epochs", "lr", "weight_decay", "batch_size", "slope")


def refiner_from_params(**params) -> "SelfIterativeRefiner":
    """A refiner from one flat dict of settings (JSON configs, ``--silr-params``) in which the head's settings
    (``epochs``, ``hidden``, ``lr``, ...) may sit beside the refiner's: they make the ``learner``, a
    :class:`~silr.learners.HeadLearner` with the default learner's 20 epochs unless ``epochs`` is given."""
    head = {k: params.pop(k) for k in HEAD_PARAMS if k in params}
    if head:
        if params.get("learner") is not None:
            raise ValueError(f"give either learner or the head's settings ({', '.join(head)}), not both")
        params["learner"] = HeadLearner(**{"epochs": 20, **head})  # 20: the default learner's
    from silr.refine import SelfIterativeRefiner

    return SelfIterativeRefiner(**params)



def prior_estimator(X, *, gold: bool, prior_fn=None, n_bootstrap: int = 2000, seed: int = 0):
    """``estimate(r, y_lab, s_lab, s_corpus) -> PriorEstimate`` for round ``r``'s labels: from the labeled rows
    (:func:`silr.priors.estimate_priors`), from the corpus alone when there is no gold label
    (:func:`silr.priors_unlabeled.estimate_priors_unlabeled`), or ``prior_fn(r, s_corpus)`` (benchmarks only)."""

    def estimate(r: int, y_lab, s_lab, s_corpus, score=None) -> PriorEstimate:  # score: silr.sampling's
        if prior_fn is not None:
            return prior_fn(r, s_corpus)
        if not gold:
            from silr.priors_unlabeled import estimate_priors_unlabeled

            return estimate_priors_unlabeled(X, s_corpus, n_bootstrap=n_bootstrap, seed=seed + r)
        return estimate_priors(y_lab, s_lab, float(np.mean(s_corpus)), n_bootstrap=n_bootstrap, seed=seed + r)

    return estimate



def default_learner() -> HeadLearner:
    """The per-round learner used when ``learner=None``: a linear head, 20 epochs (the refiner's defaults)."""
    return HeadLearner(epochs=20)


def new_learner(template):
    """A fresh, unfitted copy of the learner template for one round."""
    if callable(getattr(template, "clone", None)):
        return template.clone()
    if hasattr(template, "get_params"):
        from sklearn.base import clone

        return clone(template)
    return copy.deepcopy(template)


def train_round(template, X, X_lab, pseudo, weights, *, risk: str, val_mask, seed: int, **labeled):
    """Fit a fresh copy of the learner on the corpus split by ``pseudo``. Returns ``(learner, corpus scores,
    labeled-row scores, scale)``; ``scale`` is the corpus scores' standard deviation (1 when it is 0); no
    labeled-row scores when ``X_lab`` is None. ``labeled`` is the learner's ``labeled=`` argument, if any."""
    learner = new_learner(template)
    learner.fit(X, pseudo, weights, risk=risk, val_mask=val_mask, seed=seed, **labeled)
    g = np.asarray(learner.decision_function(X), dtype=np.float64)
    g_lab = np.asarray(learner.decision_function(X_lab), dtype=np.float64) if X_lab is not None else np.zeros(0)
    return learner, g, g_lab, float(np.std(g)) or 1.0


class RunningScore:
    """The scores that label each round: the running mean of every round's standardised scores
    (``"running_mean"``) or the last round's alone (``"last"``), on the corpus and on the labeled rows."""

    def __init__(self, aggregate: str, n: int, n_lab: int):
        self.aggregate = aggregate
        self.z_sum = np.zeros(n, dtype=np.float64)
        self.z_sum_lab = np.zeros(n_lab, dtype=np.float64)

    def add(self, g, g_lab, scale: float, r: int):
        """Round ``r``'s scores in; the aggregated ``(corpus, labeled rows)`` scores out."""
        if self.aggregate == "running_mean":
            self.z_sum += g / scale
            self.z_sum_lab += g_lab / scale
            return self.z_sum / r, self.z_sum_lab / r
        return g / scale, g_lab / scale


def aggregated_score(learners: list, scales: list, aggregate: str, X) -> np.ndarray:
    """The aggregated score of rounds ``1..len(learners)`` on new inputs (what labeled the last of them)."""
    k = len(learners)
    if aggregate == "running_mean":
        return sum(np.asarray(learners[j].decision_function(X), dtype=np.float64) / scales[j] for j in range(k)) / k
    return np.asarray(learners[k - 1].decision_function(X), dtype=np.float64) / scales[k - 1]


def stack_relabel(ev, ev_lab, agg, agg_lab, y_lab, probe=None, *, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """One round's labels from the stack of (LLM evidence, classifier score[, probe score]): the corpus by the
    logistic regression fitted on the labeled rows, the labeled rows by its out-of-fold predictions. ``probe``
    is ``(corpus scores, out-of-fold labeled scores)`` of the labeled-row probe; ``weights`` the labeled rows'
    design weights (``silr sample``)."""
    y = np.asarray(y_lab).astype(np.int64)
    if np.unique(y).size < 2:  # nothing to fit: the classifier alone
        return (agg > 0).astype(np.int8), (agg_lab > 0).astype(np.int8)
    extra = {"probe_score": probe[0], "probe_score_lab": probe[1]} if probe is not None else {}
    cand = stack_candidate(ev, ev_lab, agg, agg_lab, y, sample_weight=design_sample_weight(weights), **extra)
    # the candidate keeps whether each labeled row's out-of-fold prediction was right: that is the prediction
    new_lab = np.where(cand.correct, y, 1 - y).astype(np.int8)
    return cand.corpus_labels.astype(np.int8), new_lab


def round_record(r, est, *, source, risk=None, trained_with=None, learner=None, n_changed=None, seconds=None) -> dict:
    """One round's record (``rounds_[r]``, a ``rounds.json`` entry): priors with intervals, risk, losses, time."""
    rec: dict = {"round": r, "source": source, "risk": risk}
    if est is not None:
        d = est.to_dict()
        rec.update({k: d[k] for k in ("pi", "theta_p", "theta_n", "accuracy", "gap", "pseudo_positive_rate")})
        rec["intervals"] = d["intervals"]
        rec["prob_gap_nonpositive"] = d["prob_gap_nonpositive"]
    if trained_with is not None:
        rec["trained_with"] = {"pi": trained_with.pi, "theta_p": trained_with.theta_p, "theta_n": trained_with.theta_n}
    hist = getattr(learner, "history_", []) if learner is not None else []
    best = getattr(learner, "best_epoch_", None) if learner is not None else None
    rec["history"] = hist
    rec["best_epoch"] = best
    chosen = next((h for h in hist if h.get("epoch") == best), None)
    rec["train_loss"] = chosen.get("train_loss") if chosen else None
    rec["val_loss"] = chosen.get("val_loss") if chosen else None
    rec["n_changed"] = n_changed
    rec["seconds"] = seconds
    return rec


@dataclass
class RoundsOutcome:
    """What :func:`run_rounds` leaves: every kept round's corpus / labeled-row labels and aggregated scores (round 0
    first), the kept rounds' learners and score scales, and why the loop stopped early (``stop`` None: it did not)."""
    labels: list
    lab_labels: list
    scores: list
    lab_scores: list
    learners: list = field(default_factory=list)
    scales: list = field(default_factory=list)
    stop: StopReason | None = None
    detail: str | None = None


def run_rounds(params, template, X, X_lab, s0, s_lab, y_lab, priors: list, records: list, *, n_planned: int,
               estimate, relabel=None, gains=None, on_round=None, labeled_kw=None) -> RoundsOutcome:
    """Rounds ``1..n_planned`` of the loop. Each trains a fresh copy of ``template`` with the robust UU risk on the
    current labels (the priors of ``priors[-1]``; ``params``: the refiner's ``seed``, ``aggregate``, ``risk``,
    ``later_risk``, ``val_fraction``, ``min_gap``), relabels the corpus (the running score's sign, or
    ``relabel(agg, agg_lab) -> (labels, labeled-row labels)``), estimates the new labels' priors
    (``estimate(r, y_lab, s_lab, s_corpus, score=)``) and stops when they are unusable (the round is not kept) or
    no label changed. Appends to ``priors`` and ``records``; ``gains(new, new_lab, agg)`` adds the round's gain
    record; ``on_round(record)`` is called after each round."""
    n = np.size(s0)
    rng = np.random.default_rng(params.seed)
    out = RoundsOutcome(labels=[s0], lab_labels=[s_lab], scores=[np.full(n, np.nan, dtype=np.float32)],
                        lab_scores=[np.full(np.size(y_lab), np.nan, dtype=np.float32)])
    running = RunningScore(params.aggregate, n, np.size(y_lab))
    for r in range(1, n_planned + 1):
        est = priors[-1]
        risk = params.risk if r == 1 or params.later_risk is None else params.later_risk
        weights = UUWeights.from_priors(est.pi, est.theta_p, est.theta_n)
        val_mask = np.zeros(n, dtype=bool)
        if params.val_fraction > 0:
            val_mask[rng.choice(n, int(round(params.val_fraction * n)), replace=False)] = True
        t0 = time.perf_counter()
        learner, g, g_lab, scale = train_round(template, X, X_lab, out.labels[-1], weights, risk=risk,
                                               val_mask=val_mask, seed=params.seed * 1000 + r, **(labeled_kw or {}))
        out.learners.append(learner)
        out.scales.append(scale)
        agg, agg_lab = running.add(g, g_lab, scale, r)
        if relabel is not None:
            new, new_lab = relabel(agg, agg_lab)
        else:
            new = (agg > 0).astype(np.int8)
            new_lab = (agg_lab > 0).astype(np.int8)
        seconds = time.perf_counter() - t0
        try:
            est_new = estimate(r, y_lab, new_lab, new, score=agg)
            why = check_usable(est_new, min_gap=params.min_gap)
        except PriorEstimationError as e:
            est_new, why = None, str(e)
        rec = round_record(r, est_new, source="classifier", risk=risk, trained_with=est, learner=learner,
                           n_changed=int(np.sum(new != out.labels[-1])), seconds=seconds)
        if est_new is None or why is not None:
            rec["rejected"] = why
            records.append(rec)
            if on_round:
                on_round(rec)
            # this round's labels are not kept: its labeler is unusable
            out.learners.pop()
            out.scales.pop()
            out.stop = StopReason.ROUND_REJECTED
            out.detail = f"stopped at round {r}: its labels cannot drive another round ({why})"
            break
        out.labels.append(new)
        out.lab_labels.append(new_lab)
        out.scores.append(agg.astype(np.float32))
        out.lab_scores.append(agg_lab.astype(np.float32))
        if gains is not None:
            rec["gain_over_round0"] = gains(new, new_lab, agg)
        priors.append(est_new)
        records.append(rec)
        if on_round:
            on_round(rec)
        if rec["n_changed"] == 0:
            out.stop, out.detail = StopReason.CONVERGED, f"converged at round {r}: no corpus label changed"
            break
    return out
