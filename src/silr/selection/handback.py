"""The hand-back: which labels and which model the refiner hands back, chosen once in ``fit``, applied in ``predict``.

:meth:`HandBackModel.choose` builds the candidates (the LLM's labels, the refined labels, the labeled-row
probe, the stack of LLM evidence and refined score), picks one with the paired bootstrap of
:func:`silr.selection.candidates.select`, and Platt-calibrates the refined classifier's score on the labeled
rows. :meth:`HandBackModel.decision_function` applies the same choice to new inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable

import numpy as np

from silr.selection.candidates import (
    Candidate,
    design_sample_weight,
    fit_probe,
    probe_candidate,
    probe_decision,
    probe_scores,
    select,
    stack_candidate,
    threshold_oof_correct,
)

__all__ = ["HandBack", "HandBackModel", "ProbeCache", "SELECTIONS"]

SELECTIONS = ("paired", "estimated_accuracy", "last")

#: seed offset of the selection's paired bootstrap (kept from the first release so figures do not move)
_SELECT_SEED = 7919


class HandBack(StrEnum):
    """Where the handed-back labels (and the model for new inputs) come from."""

    LLM = "llm"  # the round-0 pseudo-labels
    REFINED = "refined"  # the refined classifier
    STACK = "stack"  # logistic regression on (LLM evidence, refined score[, probe score])
    PROBE = "probe"  # logistic regression on the labeled rows alone


class ProbeCache:
    """The labeled-row probe's scores, computed at most once per fit (the loop and the hand-back share them).

    ``weights``: the labeled rows' design weights (``silr sample``); the probe is then fitted with them."""

    def __init__(self, X_lab, y_lab: np.ndarray, X, weights: np.ndarray | None = None):
        self.X_lab, self.y_lab, self.X = X_lab, y_lab, X
        self.sample_weight = design_sample_weight(weights)
        self._scores = None

    def scores(self):
        """``(corpus scores, out-of-fold labeled scores, probe)`` (:func:`probe_scores`)."""
        if self._scores is None:
            self._scores = probe_scores(self.X_lab, self.y_lab, self.X, sample_weight=self.sample_weight)
        return self._scores

    def fitted(self) -> dict:
        """The probe fitted on every labeled row (the cached one when the scores were computed)."""
        return self._scores[2] if self._scores is not None else fit_probe(self.X_lab, self.y_lab, self.sample_weight)


def _llm_and_stack(labels: list, lab_labels: list, y_lab: np.ndarray, llm_score, llm_score_lab, clf, clf_lab,
                   probe, sample_weight, threshold_fitted: bool = True) -> tuple[Candidate, Candidate]:
    """The LLM's candidate and the stack's: ``(llm, stack)``.

    The stack's LLM evidence is the LLM score, or without one the pseudo-label itself (stacking it is the
    noisy-channel posterior P(y | x, s) ~ P(y | x) P(s | y), with a logistic form fitted on the labeled rows);
    its other inputs the refined score ``clf``/``clf_lab`` (``None`` when no round was kept) and the probe's
    ``(corpus, out-of-fold)`` scores ``probe`` (or ``None``). With a score the LLM's threshold was fitted on the
    labeled rows, so its labels there are judged out of fold (``threshold_fitted=False``: it was not; as given)."""
    if llm_score is None:
        ev, ev_lab, stack_input = labels[0], lab_labels[0], "pseudo_label"
    else:
        ev, ev_lab, stack_input = llm_score, llm_score_lab, "llm_score"
    ev, ev_lab = np.asarray(ev, dtype=np.float64), np.asarray(ev_lab, dtype=np.float64)
    if not (np.isfinite(ev).all() and np.isfinite(ev_lab).all()):
        raise ValueError("llm_score must be finite (drop abstained rows first)")
    if stack_input == "llm_score" and threshold_fitted:
        llm = Candidate("llm", labels[0], threshold_oof_correct(ev_lab, y_lab),
                        "the round-0 pseudo-labels (threshold refitted out of fold on the labeled rows)")
    else:
        llm = Candidate("llm", labels[0], lab_labels[0] == y_lab, "the round-0 pseudo-labels")
    extra = {} if probe is None else {"probe_score": probe[0], "probe_score_lab": probe[1]}
    stack = stack_candidate(ev, ev_lab, clf, clf_lab, y_lab, sample_weight=sample_weight, **extra)
    stack.extra["stack"]["input"] = stack_input
    return llm, stack


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass
class HandBackModel:
    """The handed-back choice: ``source``, the rounds it uses, and the fitted pieces to apply it.

    ``predict_round`` is the round whose classifier scores new inputs (the last round when round 0 won);
    ``stack`` the stack's coefficients, ``probe`` the probe's arrays, ``platt`` the refined score's Platt
    scaling ``(slope, intercept)``.
    """

    source: HandBack
    final_round: int
    predict_round: int
    reason: str
    candidates: dict = field(default_factory=dict)
    prob_round0_better: float | None = None
    stack: dict | None = None
    stack_input: str | None = None
    probe: dict | None = None
    platt: tuple = (1.0, 0.0)

    # ------------------------------------------------------------------------------------------ fit
    @classmethod
    def choose(
        cls,
        *,
        labels: list,
        lab_labels: list,
        scores: list,
        lab_scores: list,
        accuracies: list,
        y_lab: np.ndarray,
        X,
        X_lab,
        llm_score,
        llm_score_lab,
        probes: ProbeCache,
        round0_unusable: bool,
        selection: str = "paired",
        probe: bool = True,
        stack: bool = True,
        stack_probe: bool = False,
        confidence: float = 0.9,
        n_bootstrap: int = 2000,
        seed: int = 0,
        weights: np.ndarray | None = None,
        threshold_fitted: bool = True,
    ) -> tuple["HandBackModel", np.ndarray]:
        """Choose what to hand back after the loop; returns ``(model, corpus labels handed back)``.

        ``labels[r]``/``lab_labels[r]`` are round ``r``'s corpus and labeled-row labels, ``scores``/``lab_scores``
        the aggregated scores that made them, ``accuracies[r]`` their estimated accuracy. With no labeled
        rows (``y_lab`` empty) the last round is handed back. ``weights``: the labeled rows' design weights
        (inverse inclusion probabilities, ``silr sample``): the paired bootstrap, the stack, the probe and the
        Platt scaling weight the rows by them (``None``: a uniform sample). ``threshold_fitted``: whether the
        LLM's threshold was fitted on the labeled rows (then its labels there are judged out of fold).
        """
        sw = design_sample_weight(weights)
        last = len(labels) - 1
        table: dict = {}
        source = HandBack.REFINED if last else HandBack.LLM
        stack_coef, stack_input, probe_arrays, chosen_labels = None, None, None, None
        if y_lab.size == 0:
            final_round = last
            reason = ("no gold labels: the last round is handed back" if last else
                      "no gold labels and no refinement round kept: the pseudo-labels are handed back")
        elif last == 0 and selection == "paired" and probe:
            if stack and stack_probe:
                # not started: the started path's stack without a refined score, i.e. the LLM's evidence and
                # the probe's out-of-fold score, so a fallback keeps what the LLM knows (the probe alone on 50
                # rows can be far below the LLM's labels)
                cands = list(_llm_and_stack(labels, lab_labels, y_lab, llm_score, llm_score_lab, None, None,
                                            probes.scores()[:2], sw, threshold_fitted))
                default, stack_coef = "stack", cands[1].extra["stack"]
                stack_input = stack_coef["input"]
            else:
                cands = [Candidate("llm", labels[0], lab_labels[0] == y_lab, "the round-0 pseudo-labels"),
                         probe_candidate(X_lab, y_lab, X, sw)]
                default = "probe" if round0_unusable else "llm"
            chosen, reason, table = select(cands, default, confidence=confidence, n_bootstrap=n_bootstrap,
                                           seed=seed + _SELECT_SEED, weights=weights)
            source, final_round = HandBack(chosen.name), 0
            if source in (HandBack.PROBE, HandBack.STACK):
                probe_arrays = probes.fitted()
            if source is not HandBack.STACK:
                stack_coef, stack_input = None, None
            chosen_labels = chosen.corpus_labels
        elif selection == "last" or last == 0:
            final_round = last
            reason = "the last round" if last else "no refinement round was kept"
        elif selection == "estimated_accuracy":
            best = max(range(len(accuracies)), key=lambda r: (round(accuracies[r], 9), r))
            final_round = best
            source = HandBack.REFINED if best else HandBack.LLM
            reason = (f"round {best} has the highest accuracy estimated from the labeled sample "
                      f"({accuracies[best]:.3f}; " + ", ".join(f"round {r}: {a:.3f}" for r, a in enumerate(accuracies))
                      + ")")
        else:
            cands = [Candidate("llm", labels[0], lab_labels[0] == y_lab, "the round-0 pseudo-labels"),
                     Candidate("refined", labels[last], lab_labels[last] == y_lab, f"round {last} labels")]
            default = "refined"
            if stack:
                cands[0], cand = _llm_and_stack(labels, lab_labels, y_lab, llm_score, llm_score_lab, scores[last],
                                                lab_scores[last], probes.scores()[:2] if stack_probe else None, sw,
                                                threshold_fitted)
                cands.append(cand)
                default, stack_input = "stack", cand.extra["stack"]["input"]
            if probe and not (stack and stack_probe):
                # (with stack_probe the stack holds the probe as an input: choosing between them on 50 rows
                # would pay the winner's curse twice)
                cands.append(probe_candidate(X_lab, y_lab, X, sw))
            chosen, reason, table = select(cands, default, confidence=confidence, n_bootstrap=n_bootstrap,
                                           seed=seed + _SELECT_SEED, weights=weights)
            source = HandBack(chosen.name)
            final_round = 0 if source is HandBack.LLM else last
            stack_coef = next((c.extra["stack"] for c in cands if c.name == "stack"), None)
            if source is HandBack.PROBE or (source is HandBack.STACK and (stack_coef or {}).get("probe")):
                probe_arrays = probes.fitted()
            chosen_labels = chosen.corpus_labels
        model = cls(
            source=source, final_round=final_round, predict_round=final_round if final_round > 0 else last,
            reason=reason, candidates=table,
            prob_round0_better=(table.get("llm") or {}).get("prob_better_than_default"),
            stack=stack_coef, stack_input=stack_input, probe=probe_arrays,
        )
        model.platt = model._calibrate(lab_scores, y_lab, sw)
        transduction = (chosen_labels if chosen_labels is not None else labels[final_round]).copy()
        return model, transduction

    def _calibrate(self, lab_scores: list, y_lab: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple:
        """Platt scaling of the classifier's aggregated score on the labeled sample (``predict_proba`` only).

        The probe and the stack are logistic regressions already: their scores are logits.
        """
        if self.predict_round == 0 or self.source in (HandBack.PROBE, HandBack.STACK) or y_lab.size == 0:
            return (1.0, 0.0)
        from sklearn.linear_model import LogisticRegression

        z = lab_scores[self.predict_round].astype(np.float64)
        if np.unique(y_lab).size < 2:
            return (1.0, 0.0)
        lr = LogisticRegression(C=1.0)
        lr = lr.fit(z[:, None], y_lab) if sample_weight is None else lr.fit(z[:, None], y_lab, sample_weight=sample_weight)
        slope = float(lr.coef_[0, 0])
        return (slope if slope > 0 else 1.0, float(lr.intercept_[0]) if slope > 0 else 0.0)

    # -------------------------------------------------------------------------------------- predict
    def decision_function(self, X, classifier: Callable[[object], np.ndarray], llm_score=None) -> np.ndarray:
        """Score of the handed-back model on new inputs (higher = positive; 0 = threshold).

        ``classifier(X)`` is the refined classifier's aggregated score. The probe or the stack when chosen
        (the stack needs the inputs' ``llm_score``; without it the refined classifier alone is used, or the probe
        for the stack of a loop that did not start).
        """
        if self.source is HandBack.PROBE and self.probe is not None:
            return probe_decision(self.probe, X)
        st = self.stack
        if self.source is HandBack.STACK and st is not None:
            refined = st.get("refined", True)
            if llm_score is not None:
                cols = [np.asarray(llm_score, dtype=np.float64)]
                if refined:
                    cols.append(classifier(X))
                if st.get("probe"):
                    cols.append(probe_decision(self.probe, X))
                F = (np.column_stack(cols) - st["mean"]) / st["std"]
                return F @ np.asarray(st["coef"]) + st["intercept"]
            if not refined:  # a not-started loop's stack has no classifier: its probe scores inputs without a score
                return probe_decision(self.probe, X)
        return classifier(X)

    def proba(self, decision: np.ndarray) -> np.ndarray:
        """``P(positive)`` from :meth:`decision_function`'s output (Platt-scaled for the refined classifier)."""
        a, b = self.platt
        return _sigmoid(a * decision + b)
