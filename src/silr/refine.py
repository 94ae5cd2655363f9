"""The self-iterative refinement loop (Asano et al., NeurIPS 2025), as a scikit-learn estimator.

Round 0 is the given pseudo-labels ``y`` (from an LLM); :func:`silr.priors.start_gate` decides whether their
priors can start a refinement. Each round ``r = 1..R``: estimate the class priors ``(pi, theta_p, theta_n)``
of the current labels from the labeled rows (``y_gold != -1``) and the corpus, and stop if they are unusable;
train a fresh copy of ``learner`` on the corpus split into P~ / N~ by the current labels (the epoch kept by
its risk on a held-out share of the corpus, no gold labels); relabel the corpus by the running mean of every
round's standardised scores (``aggregate="running_mean"``; the last classifier alone drifts, PAPER.md
section 7). After the loop :class:`silr.selection.HandBackModel` chooses what is handed back and applies the
same choice in ``predict``; saving and loading: :mod:`silr.persist`; one round's pieces: :mod:`silr.rounds`.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import metadata_routing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from silr.priors import DEFAULT_MIN_GAP, PriorEstimate, RefinementError, start_gate
from silr.fit_checks import check_fit_inputs, check_predict_X, takes_texts
from silr.risks import RISKS
from silr.rounds import (HEAD_PARAMS, StopReason, aggregated_score, default_learner, prior_estimator,
                         refiner_from_params, round_record, run_rounds, stack_relabel)
from silr.selection import SELECTIONS, HandBack, HandBackModel, ProbeCache

__all__ = ["SelfIterativeRefiner", "RefinementError", "StopReason", "HandBack", "AGGREGATES", "SELECTIONS",
           "RELABELS", "default_learner", "refiner_from_params", "HEAD_PARAMS"]

AGGREGATES = ("running_mean", "last")
RELABELS = ("classifier", "stack")


def _handback_attr(name: str, doc: str):
    def get(self):
        try:
            hb = self.__dict__["handback_"]
        except KeyError:
            raise AttributeError(f"{name}_ (the refiner is not fitted)") from None
        return getattr(hb, name)

    return property(get, doc=doc)


class SelfIterativeRefiner(ClassifierMixin, BaseEstimator):
    """Refine noisy pseudo-labels with robust unlabeled-unlabeled learning, round after round.

    ``fit(X, y, y_gold=..., llm_score=...)``: ``y`` are the LLM's pseudo-labels of every row of ``X`` (any two
    label values), ``y_gold`` the gold labels of the few labeled rows and ``-1`` elsewhere (the convention of
    :mod:`sklearn.semi_supervised`; when ``-1`` is itself a class, mark unknown rows with NaN or None), and
    ``llm_score`` the LLM's real-valued scores (higher = positive). With no gold label at all the priors are
    estimated from the corpus alone (confident joint; a ``UserWarning`` says so) and the last round is handed
    back. ``y_gold`` and ``llm_score`` are routed as metadata (``set_fit_request``) in pipelines.

    Parameters
    ----------
    rounds : int
        Maximum number of refinement rounds after round 0.
    risk : {"robust_uu", "uu", "pn"}
        Risk of round 1 (``pn`` = PN learning on the pseudo-labels, a baseline).
    later_risk : {"robust_uu", "uu", "pn"} or None
        Risk of rounds 2 and later (``None``: same as ``risk``). With K > 2 classes ``"uu"`` means ``risk``
        (:mod:`silr.multiclass`: the unbiased K-class risk over-fits).
    aggregate : {"running_mean", "last"}
        How a round's labels are made: the sign of the running mean of all rounds' scores, each divided by
        its standard deviation over the corpus, or the sign of the last classifier's score alone.
    relabel : {"classifier", "stack"}
        How each round relabels the corpus. ``"classifier"``: the sign of the (aggregated) classifier score,
        as in the paper. ``"stack"``: a logistic regression of the gold label on (LLM evidence, aggregated
        classifier score), fitted on the labeled rows each round (the labeled rows' own labels are its
        out-of-fold predictions). The LLM evidence is ``llm_score`` when given, else the round-0 pseudo-label.
    selection : {"paired", "estimated_accuracy", "last"}
        Which round's labels are handed back. ``"paired"`` (default) keeps the default candidate unless the
        labeled sample shows another is better in at least ``fallback_confidence`` of paired bootstrap draws
        (:mod:`silr.selection`). ``"estimated_accuracy"``: the round with the highest estimated accuracy;
        ``"last"``: the last round.
    fallback_confidence : float
        ``"paired"``: bootstrap probability with which another candidate must beat the default to be chosen.
    probe : bool
        ``"paired"``: also consider a logistic regression trained on the labeled rows alone (on feature
        arrays; not with a learner on texts).
    stack : bool
        ``"paired"``: the default candidate becomes a logistic regression on (LLM evidence, refined score)
        fitted on the labeled rows. To apply it to new inputs pass their ``llm_score`` to :meth:`predict`.
    stack_probe : bool or "auto"
        Add the labeled-row probe's score as a third stack input (out of fold on the labeled rows; the probe
        is then not a separate candidate). ``"auto"``: on when ``llm_score`` is given; with K > 2 classes always
        on (the stack's three coefficients are shared by all classes, with a per-class bias; benchmarks/KCLASS.md).
    start_gap_lower : float, "auto" or None
        Round 0 only: also require the lower end of the 95% bootstrap interval of ``theta_p - theta_n`` to
        exceed this value, else the refinement does not start. ``"auto"``: 0.0 when ``llm_score`` is given,
        off otherwise. ``None``: off.
    learner : object or None
        The per-round learner, unfitted; each round trains a fresh copy (its ``clone()``, or
        :func:`sklearn.base.clone`, or a deep copy). It implements ``fit(X, pseudo, weights, *, risk,
        val_mask, seed[, labeled])`` and ``decision_function(X)`` (:mod:`silr.learners`); one with
        ``takes_texts = True`` gets ``X`` as texts. ``None``: :func:`default_learner`, a linear
        :class:`~silr.learners.HeadLearner` with 20 epochs.
    supervised_weight : float in [0, 1] or "auto"
        Weight ``w`` of the supervised PN risk on the labeled rows in each round's objective,
        ``(1 - w) * corpus risk + w * supervised risk``; passed to the learner as ``labeled=(X_lab, y_lab, w)``
        only when ``w > 0``. ``0.0`` (default): the corpus risk alone, as in the paper. ``"auto"``: currently
        0.0 (the rule is chosen from measurements on the tuning data sets).
    val_fraction : float
        Share of the corpus held out each round to pick the epoch (by validation risk; no gold labels).
    min_gap : float
        Smallest ``theta_p - theta_n`` a round may train on.
    n_bootstrap : int
        Bootstrap draws for the prior intervals and the paired selection.
    seed : int
        Seeds the validation split, the initialisation and the bootstrap.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two label values; ``classes_[1]`` is the positive class.
    labels_ : ndarray of shape (n_rounds_ + 1, n_samples)
        Corpus labels per round as 0/1 codes (``classes_[labels_]`` gives the values); row 0 is ``y``.
    scores_ : ndarray of shape (n_rounds_ + 1, n_samples)
        The aggregated score that made each round's labels (row 0 is NaN).
    transduction_ : ndarray of shape (n_samples,)
        The handed-back corpus labels (values of ``classes_``).
    priors_ : list of PriorEstimate
        ``priors_[r]`` describes round ``r``'s labels.
    rounds_ : list of dict
        One record per round (priors with intervals, risk, losses per epoch, rows changed, time).
    learners_ : list
        The learner of each round 1..n_rounds_.
    n_rounds_ : int
        Rounds actually run.
    handback_ : HandBackModel
        What is handed back; ``final_source_`` (a :class:`HandBack`), ``final_round_``, ``predict_round_``,
        ``candidates_``, ``selection_reason_``, ``stack_``, ``probe_`` and ``platt_`` read from it.
    stop_reason_ : StopReason
        Why the loop ended; ``stop_detail_`` says it in a sentence.
    n_features_in_, feature_names_in_ :
        Set when ``X`` is a feature array.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000); X = rng.normal(size=(2000, 5)) + y[:, None]
    >>> noisy = np.where(rng.random(2000) < 0.3, 1 - y, y)
    >>> gold = np.full(2000, -1); lab = rng.choice(2000, 50, replace=False); gold[lab] = y[lab]
    >>> model = SelfIterativeRefiner(rounds=2).fit(X, noisy, y_gold=gold)
    >>> bool((model.transduction_ == y).mean() > (noisy == y).mean())
    True
    """

    _parameter_constraints: dict = {
        "rounds": [Interval(Integral, 1, None, closed="left")],
        "risk": [StrOptions(set(RISKS))],
        "later_risk": [StrOptions(set(RISKS)), None],
        "aggregate": [StrOptions(set(AGGREGATES))],
        "relabel": [StrOptions(set(RELABELS))],
        "selection": [StrOptions(set(SELECTIONS))],
        "fallback_confidence": [Interval(Real, 0, 1, closed="both")],
        "probe": ["boolean"],
        "stack": ["boolean"],
        "stack_probe": ["boolean", StrOptions({"auto"})],
        "start_gap_lower": [Interval(Real, None, None, closed="neither"), StrOptions({"auto"}), None],
        "learner": [HasMethods(["fit", "decision_function"]), None],
        "supervised_weight": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "val_fraction": [Interval(Real, 0, 0.9, closed="left")],
        "min_gap": [Interval(Real, 0, None, closed="left")],
        "n_bootstrap": [Interval(Integral, 1, None, closed="left")],
        "seed": [Interval(Integral, 0, None, closed="left")],
    }
    #: y with K > 2 values goes to silr.multiclass (fit_checks reads this)
    _accepts_kclass = True
    # progress callbacks and benchmark-only prior overrides are not metadata to route
    __metadata_request__fit = {"on_round": metadata_routing.UNUSED, "prior_fn": metadata_routing.UNUSED,
                               "sample_design": metadata_routing.UNUSED}

    def __init__(
        self,
        *,
        rounds: int = 5,
        risk: str = "robust_uu",
        later_risk: str | None = "uu",
        aggregate: str = "running_mean",
        relabel: str = "classifier",
        selection: str = "paired",
        fallback_confidence: float = 0.9,
        probe: bool = True,
        stack: bool = True,
        stack_probe: bool | str = "auto",
        start_gap_lower: float | str | None = "auto",
        learner=None,
        supervised_weight: float | str = 0.0,
        val_fraction: float = 0.125,
        min_gap: float = DEFAULT_MIN_GAP,
        n_bootstrap: int = 2000,
        seed: int = 0,
    ):
        self.rounds = rounds
        self.risk = risk
        self.later_risk = later_risk
        self.aggregate = aggregate
        self.relabel = relabel
        self.selection = selection
        self.fallback_confidence = fallback_confidence
        self.probe = probe
        self.stack = stack
        self.stack_probe = stack_probe
        self.start_gap_lower = start_gap_lower
        self.learner = learner
        self.supervised_weight = supervised_weight
        self.val_fraction = val_fraction
        self.min_gap = min_gap
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True  # K > 2: silr.multiclass
        tags.input_tags.sparse = True
        return tags

    final_source_ = _handback_attr("source", "Where the handed-back labels come from (:class:`HandBack`).")
    final_round_ = _handback_attr("final_round", "The round whose labels are handed back (0: the LLM's).")
    predict_round_ = _handback_attr("predict_round", "The round whose classifier scores new inputs.")
    candidates_ = _handback_attr("candidates", "The selection's table of candidates.")
    selection_reason_ = _handback_attr("reason", "Why ``final_source_`` was chosen.")
    prob_round0_better_ = _handback_attr("prob_round0_better", "Bootstrap probability that round 0 is better.")
    stack_ = _handback_attr("stack", "The stack's coefficients, when one was fitted.")
    stack_input_ = _handback_attr("stack_input", "The stack's LLM evidence: 'llm_score' or 'pseudo_label'.")
    probe_ = _handback_attr("probe", "The labeled-row probe's arrays, when it is used for new inputs.")
    platt_ = _handback_attr("platt", "Platt scaling (slope, intercept) of the refined score.")

    # ------------------------------------------------------------------------------------------ fit
    def _supervised_weight(self) -> float:
        return 0.0 if self.supervised_weight == "auto" else float(self.supervised_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, y_gold=None, llm_score=None,
            on_round: Callable[[dict], None] | None = None,
            prior_fn: Callable[[int, np.ndarray], PriorEstimate] | None = None, sample_design=None,
            llm_threshold_fitted: bool | None = None):
        """Run the refinement.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), or a sequence of texts
            Every corpus row, labeled rows included (texts for a learner with ``takes_texts``).
        y : array-like of shape (n_samples,)
            Round-0 labels of the corpus (the LLM's pseudo-labels), two distinct values.
        y_gold : array-like of shape (n_samples,), optional
            Gold labels of the labeled rows, ``-1`` elsewhere. The only gold labels the loop reads.
        llm_score : array-like of shape (n_samples,), optional
            The LLM's real-valued scores (higher = positive): the round-0 start gate, the stack.
        on_round : callable, optional
            Called with each round's record as soon as it is done (progress, logging, checkpoints).
        prior_fn : callable, optional
            ``prior_fn(round, corpus_labels) -> PriorEstimate`` replaces the estimator. For benchmarks
            with oracle priors only; never used by the command line.
        sample_design : silr.sampling.SamplingDesign, optional
            The labeled rows were drawn by this design (``silr sample``; its rows are the labeled rows' positions in
            ``X``): every round's priors are design-weighted, prediction-powered estimates
            (:mod:`silr.sampling.refit`) instead of the post-stratified bootstrap of a uniform sample.
        llm_threshold_fitted : bool, optional
            Whether ``y`` is ``llm_score`` cut at a threshold fitted on the labeled rows (``silr annotate
            --threshold accuracy``). ``None`` (default) assumes so whenever ``y`` is a threshold of ``llm_score``,
            and the labeled rows' round-0 labels are then judged out of fold (start gate, gain, hand-back); ``False``
            (a fixed number, ``--threshold prior``) takes them as given.
        """
        texts = takes_texts(self.learner, X)
        d = check_fit_inputs(self, X, y, y_gold, llm_score, texts=texts)
        if d.classes.size > 2:  # K-class: silr.multiclass (K = 2 stays on the path below)
            from silr.multiclass.estimator import fit_refiner_kclass

            return fit_refiner_kclass(self, d, on_round)
        X, s0, y_lab, s_lab = d.X, d.s0, d.y_lab, d.s_lab
        template = default_learner() if self.learner is None else self.learner
        gold = d.has_gold
        if not gold:
            if texts and prior_fn is None:
                raise RefinementError("without gold labels the priors are estimated from feature arrays; a learner "
                                      "on texts needs a few gold labels (y_gold)")
            warnings.warn("no gold labels (y_gold): the class priors are estimated from the corpus alone (confident "
                          "joint, far less reliable than ~50 gold labels) and the last round is handed back without "
                          "selection or calibration; label a few rows when you can", UserWarning, stacklevel=3)
        use_probe = bool(self.probe) and not texts  # the probe is a logistic regression on feature arrays
        stack_probe = gold and not texts and ((d.llm is not None) if self.stack_probe == "auto" else bool(self.stack_probe))
        relabel = self.relabel if gold else "classifier"
        may_fall_back = use_probe and self.selection == "paired"
        ev, ev_lab = (d.llm, d.llm_lab) if d.llm is not None else (s0.astype(np.float64), s_lab.astype(np.float64))
        # the labeled rows' design weights (`silr sample`): the hand-back's fits and bootstrap weight rows by them
        lab_w = None if sample_design is None or not gold else 1.0 / sample_design.inclusion[d.lab]
        probes = ProbeCache(d.X_lab, y_lab, X, lab_w)
        w = self._supervised_weight()
        labeled_kw = {"labeled": (d.X_lab, y_lab, w)} if w > 0 and gold else {}

        estimate = prior_estimator(X, gold=gold, prior_fn=prior_fn, n_bootstrap=self.n_bootstrap, seed=self.seed)
        if sample_design is not None and gold and prior_fn is None:  # rows drawn by `silr sample`
            from silr.sampling.refit import design_prior_estimator

            estimate = design_prior_estimator(sample_design, d.lab, s0, d.llm)
        gate = start_gate(y_lab, s_lab, s0, lambda yl, sl, sc: estimate(0, yl, sl, sc), llm_score=d.llm,
                          llm_score_lab=d.llm_lab, min_gap=self.min_gap, start_gap_lower=self.start_gap_lower,
                          can_fall_back=may_fall_back and gold, threshold_fitted=llm_threshold_fitted is not False)
        priors = [gate.estimate]
        records = [round_record(0, gate.estimate, source="pseudo-labels")]
        records[0]["labeled_rows_round0_labels"] = gate.round0_labeled
        gains = None  # "did refinement help?": each round's accuracy gain over round 0, with an interval
        if gold:
            from silr.sampling.refit import RoundGains

            gains = RoundGains(y_lab, d.lab, s0, s_lab, d.llm, sample_design,
                               oof=gate.round0_labeled != "as given")
        if on_round:
            on_round(records[0])
        n_planned = self.rounds
        if gate.why is not None:
            if gold and not may_fall_back:
                raise RefinementError(f"the pseudo-labels cannot start a refinement: {gate.why}")
            n_planned = 0
            stop = StopReason.NOT_STARTED
            fallback = ("a stack of the LLM's score and a probe trained on the labeled rows" if self.stack and stack_probe
                        else "the labeled rows (a probe trained on them)")
            detail = (f"refinement not started: {gate.why}. " + (
                f"The labels handed back come from {fallback} unless the pseudo-labels are reliably better"
                if gold else "The pseudo-labels are handed back"))
        else:
            stop, detail = StopReason.COMPLETED, f"completed {self.rounds} rounds"

        def stack_labels(agg, agg_lab):
            probe = probes.scores()[:2] if stack_probe else None
            return stack_relabel(ev, ev_lab, agg, agg_lab, y_lab, probe, weights=lab_w)

        loop = run_rounds(self, template, X, d.X_lab if gold else None, s0, s_lab, y_lab, priors, records,
                          n_planned=n_planned, estimate=estimate,
                          relabel=stack_labels if relabel == "stack" else None, gains=gains,
                          on_round=on_round, labeled_kw=labeled_kw)
        if loop.stop is not None:
            stop, detail = loop.stop, loop.detail
        labels, lab_labels, scores, lab_scores = loop.labels, loop.lab_labels, loop.scores, loop.lab_scores
        learners, scales = loop.learners, loop.scales

        handback, transduction = HandBackModel.choose(
            labels=labels, lab_labels=lab_labels, scores=scores, lab_scores=lab_scores,
            accuracies=[p.accuracy for p in priors], y_lab=y_lab, X=X, X_lab=d.X_lab, llm_score=d.llm,
            llm_score_lab=d.llm_lab, probes=probes, round0_unusable=gate.why is not None, selection=self.selection,
            probe=use_probe, stack=self.stack, stack_probe=stack_probe, confidence=self.fallback_confidence,
            n_bootstrap=self.n_bootstrap, seed=self.seed,
            weights=lab_w, threshold_fitted=llm_threshold_fitted is not False,
        )
        for stale in ("T_", "n_classes_"):  # a K-class fit's attributes do not outlive a binary refit
            self.__dict__.pop(stale, None)
        self.classes_ = d.classes
        self.takes_texts_ = texts
        self.labels_ = np.vstack(labels)
        self.scores_ = np.vstack(scores)
        self.n_rounds_ = len(labels) - 1
        self.priors_ = priors
        self.rounds_ = records
        self.learners_, self.scales_ = learners, scales
        self.stop_reason_, self.stop_detail_ = stop, detail
        self.round0_labeled_ = gate.round0_labeled
        self.stack_probe_ = stack_probe
        self.handback_ = handback
        self.transduction_ = self.classes_[transduction]
        return self

    # -------------------------------------------------------------------------------------- predict
    def _classifier_score(self, X) -> np.ndarray:
        k = self.handback_.predict_round
        if k == 0:
            raise RefinementError("no refinement round was kept, so there is no classifier to apply")
        return aggregated_score(self.learners_[:k], self.scales_[:k], self.aggregate, X)

    def decision_function(self, X, llm_score=None) -> np.ndarray:
        """Score of the handed-back model on new inputs (higher = ``classes_[1]``; 0 = threshold).

        The refined classifier's aggregated score (round ``predict_round_``), or, when the selection chose
        them, the probe on the labeled rows or the stack (which needs the inputs' ``llm_score``; without it
        the refined classifier alone is used).
        """
        check_is_fitted(self)
        X = check_predict_X(self, X)
        if len(self.classes_) > 2:  # K-class: log-probabilities, one column per class
            return np.log(np.clip(self.handback_.proba(X, llm_score), 1e-12, None))
        return self.handback_.decision_function(X, self._classifier_score, llm_score)

    def predict(self, X, llm_score=None) -> np.ndarray:
        d = self.decision_function(X, llm_score=llm_score)
        if d.ndim == 2:
            return self.classes_[d.argmax(1)]
        return self.classes_[(d > 0).astype(np.int64)]

    def predict_proba(self, X, llm_score=None) -> np.ndarray:
        """Probabilities (columns in ``classes_`` order): the probe's or the stack's logistic output, or the
        classifier's score Platt-scaled on the labeled sample."""
        d = self.decision_function(X, llm_score=llm_score)
        if d.ndim == 2:
            return np.exp(d) / np.exp(d).sum(1, keepdims=True)
        p = self.handback_.proba(d)
        return np.column_stack([1 - p, p])

    # ---------------------------------------------------------------------------------- reporting, disk
    def summary(self) -> dict:
        """A JSON-able description of the fitted loop (the body of ``rounds.json``)."""
        from silr.persist import json_params

        check_is_fitted(self)
        return {
            "params": json_params(self),
            "rounds": self.rounds_,
            "n_rounds": self.n_rounds_,
            "final_round": self.final_round_,
            "predict_round": self.predict_round_,
            "stop_reason": self.stop_detail_,
            "stop": self.stop_reason_,
            "selection": self.selection_reason_,
            "final_source": self.final_source_,
            "candidates": self.candidates_,
            "prob_round0_better": self.prob_round0_better_,
            "stack": self.stack_,
        }

    def save(self, path) -> None:
        """Write ``config.json`` and ``weights.safetensors`` into folder ``path`` (no pickle; :mod:`silr.persist`)."""
        from silr.persist import save_refiner

        save_refiner(self, path)

    @classmethod
    def load(cls, path, *, learner_loader: Callable[[dict, dict], object] | None = None) -> "SelfIterativeRefiner":
        """Reload a refiner saved by :meth:`save` for prediction (the corpus history is not kept)."""
        from silr.persist import load_refiner

        return load_refiner(cls, path, learner_loader=learner_loader)
