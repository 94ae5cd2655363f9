"""The K-class rounds and hand-back (``SelfIterativeRefiner.fit`` with K > 2 pseudo-label values).

Round 0 is the LLM's labels. Each round ``r``: estimate ``T`` of the current labels from the labeled rows
(:func:`~silr.multiclass.tmatrix.estimate_T`; regularised towards the identity when near-singular, and
recorded); train a fresh softmax head on the corpus split into K sets by the current labels with the corrected
risk; relabel by the argmax of the running mean of every round's standardised logits. A round whose labels
leave a class with no corpus row is not kept (the K sets are the risk's inputs).

The hand-back, like the binary path's: candidates are the LLM's labels, the refined classifier (the kept
round with the highest estimated accuracy), a logistic regression on the labeled rows alone (the probe,
out-of-fold) and a stack (:class:`SharedStack`: LLM evidence and refined scores, with ``stack_probe`` also the
probe's out-of-fold log-probabilities, each with one coefficient shared by all classes, and with ``stack_bias`` a
per-class bias (the refiner's default, :data:`STACK_BIAS_L2`); the probe is then not a
candidate of its own); ``default`` is kept unless another is better on the labeled rows in ``confidence`` of
paired bootstrap draws.

The refiner's default (``inner=False, anchor=ANCHOR_CONFIDENCE``, :mod:`silr.multiclass.estimator`) anchors the
hand-back on the LLM's labels: the stack is the only challenger (the refined classifier and, with
``stack_probe``, the probe are inputs of the stack, so they do not challenge it on their own: on ~50 rows the
in-sample accuracy of one of the stack's inputs against the stack's out-of-fold accuracy is a winner's curse),
and it replaces the LLM's labels only when better on the labeled rows in ``anchor`` of paired bootstrap
draws. Where the features cannot separate the classes (sentiment with MiniLM) the LLM's labels come back;
where they can, the stack is far ahead and wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from silr.multiclass.learner import SoftmaxHeadLearner
from silr.multiclass.risk import KWeights
from silr.multiclass.stack import SharedStack, calibrated_labels, class_thresholds, confident_flips, llm_evidence, probe_logp
from silr.multiclass.stack import dense as _dense
from silr.multiclass.stack import oof as _oof
from silr.multiclass.tmatrix import DEFAULT_MAX_CONDITION, condition_number, estimate_T, regularize_T
from silr.selection.candidates import Candidate, select

__all__ = ["KClassFit", "fit_kclass", "standardize_logits", "DEFAULTS", "ANCHOR_CONFIDENCE", "KCLASS_RISK",
           "STACK_BIAS_L2", "STACK_LLM", "LLM_CALIBRATION", "calibrated_labels"]

DEFAULTS = ("refined", "stack")

#: the stack must beat the LLM's labels in this share of paired bootstrap draws to be handed back (the refiner's
#: default with ``stack``). From {0.5, 0.75, 0.9} on the tuning sets (reuters_r8, newsgroups6, slo_opinion,
#: amazon3; benchmarks/KCLASS.md): 0.9 handed back the LLM's labels on one R8 seed where the stack was 14
#: points ahead; 0.5 let a stack below the LLM through on amazon3
ANCHOR_CONFIDENCE = 0.75

#: the K-class risk the refiner's ``risk="robust_uu"`` means: the K-class robust risk (each class's partial risk
#: from T^-1 and all K sets, non-negative) plus, for each class against the rest, the binary robust UU risk on its
#: own logit (the binary engine's risk, with each class's own theta_p, theta_n and prior from T), summed. From
#: {T^-1 risk alone, the one-vs-rest sum alone, the two summed} on the tuning sets (benchmarks/KCLASS.md, tuning
#: item 5): the sum lifted the refined labels on every topic set and kept the cells where the LLM's labels win
KCLASS_RISK = {"robust_uu": "mix_robust_uu"}

#: the refiner's stack has a per-class bias (a class prior the shared coefficients cannot express), L2 0.1. From
#: {none, 0.01, 0.1} with the anchored hand-back on the eight tuning sets (benchmarks/KCLASS_NOTES.md, tuning
#: item 6): nyt3 (70% neutral) sim60 with 100 labels -4.8 -> -0.4 points vs the best baseline, the rest within
#: 0.5 points; 38 in-range cells +0.45 -> +0.62 points, 6 -> 5 cells more than 1 point below
STACK_BIAS_L2 = 0.1

#: with the LLM's per-class scores, the refiner's stack reads them with a K x K matrix ``a I + D`` (``D``
#: penalised by L2 0.1), the per-class reading each one-vs-rest refiner has of its class's score, and round 0 is
#: their argmax after a shared scale and per-class offsets fitted on the labeled rows (L2 0.1). From {diag, full}
#: x {0.01, 0.1}, with and without the calibration, and the calibration kept only where it leaves no class
#: without a corpus row (``(0.1, "keep_classes")``: worse), on the tuning sets' Gemma cells
#: (benchmarks/KCLASS_NOTES.md, tuning item 7)
STACK_LLM = (0.1, "full")
LLM_CALIBRATION = 0.1


def standardize_logits(g: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Logits centred per row and divided by their standard deviation over the corpus (``scale``)."""
    c = g - g.mean(1, keepdims=True)
    s = float(np.std(c)) if scale is None else scale
    s = s or 1.0
    return c / s, s


@dataclass
class KClassFit:
    """What :func:`fit_kclass` hands to the refiner (codes ``0..K-1``; ``transduction`` is codes)."""

    labels: list
    lab_labels: list
    estimates: list
    records: list
    learners: list
    scales: list
    transduction: np.ndarray
    source: str
    final_round: int
    predict_round: int
    reason: str
    candidates: dict
    probe: LogisticRegression | None = None
    stack: SharedStack | None = None
    stop: str = "completed"
    stop_detail: str = ""
    calibrator: SharedStack | None = None
    extra: dict = field(default_factory=dict)


def _rates(s: np.ndarray, K: int) -> np.ndarray:
    return np.bincount(s, minlength=K) / s.size


def _identity_estimate(s, K):
    """No gold label: ``T`` cannot be estimated; the identity (the pseudo-labels taken as clean)."""
    from silr.multiclass.tmatrix import TEstimate

    eye = np.eye(K)
    rates = _rates(s, K)
    return TEstimate(T=eye, rates=rates, counts=np.zeros((K, K)), low=eye, high=eye, accuracy=1.0,
                     accuracy_interval=(1.0, 1.0), prior="none", notes=["no gold labels: T taken as the identity"])


#: pseudo-rows of the pooled prior on each row of T (silr.multiclass.tmatrix). Large on purpose: ~50 labeled rows
#: cannot pin down K x K cells, and T^-1 amplifies their noise; with 50 pseudo-rows T stays close to the pooled
#: structure (accuracy on the diagonal, the pooled mix of mistakes elsewhere) and the counts adjust it. Chosen from
#: {2, 10, 50} on newsgroups6 (sim60, 50 labels, seeds 0 and 1; a tuning set in benchmarks/KCLASS.md).
T_STRENGTH = 50.0


def _estimate(y_lab, s_lab, s, K, *, n_bootstrap, seed, max_condition):
    if np.size(y_lab) == 0:
        return _identity_estimate(s, K)
    est = estimate_T(y_lab, s_lab, _rates(s, K), K=K, n_bootstrap=n_bootstrap, seed=seed, strength=T_STRENGTH)
    if condition_number(est.T) > max_condition:
        T, lam = regularize_T(est.T, max_condition)
        est = type(est)(**{**est.__dict__, "T": T, "regularized": lam,
                           "notes": est.notes + [f"T near-singular: shrunk {lam:.2f} towards the identity"]})
    return est


def _record(r, est, *, source, risk=None, learner=None, n_changed=None, seconds=None) -> dict:
    rec = {"round": r, "source": source, "risk": risk}
    if est is not None:
        rec.update(est.to_dict())
    hist = getattr(learner, "history_", []) if learner is not None else []
    rec.update(history=hist, best_epoch=getattr(learner, "best_epoch_", None), n_changed=n_changed, seconds=seconds)
    return rec


def t_evidence(s, lab, y_lab, K, strength=None) -> np.ndarray:
    """The stack's LLM input without scores, from ``T``: row ``i`` is ``log T[s_i, :]`` centred, the log-posterior of
    each class given the LLM's label (``T`` estimated from the labeled rows with the pooled prior, as the rounds'
    ``T``); on a labeled row ``T`` is estimated without that row (leave-one-out), so the stack's fit does not see a
    row's own gold label through its input."""
    from silr.multiclass.tmatrix import _rows

    strength = T_STRENGTH if strength is None else strength
    s = np.asarray(s, dtype=np.int64)
    counts = np.zeros((K, K))
    np.add.at(counts, (s[lab], y_lab), 1.0)
    L = np.log(_rows(counts, "pooled", strength))[s]
    loo = np.repeat(counts[None], lab.size, axis=0)
    loo[np.arange(lab.size), s[lab], y_lab] -= 1.0
    L[lab] = np.log(_rows(loo, "pooled", strength))[np.arange(lab.size), s[lab]]
    return L - L.mean(1, keepdims=True)


def fit_kclass(X, s0, y_lab, lab, X_lab, K, *, llm=None, rounds=5, risk="robust_uu", later_risk="uu",
               learner=None, val_fraction=0.125, default="refined", confidence=0.9, probe=True,
               n_bootstrap=1000, seed=0, max_condition=DEFAULT_MAX_CONDITION, on_round=None, stack_bias=None,
               stack_probe=False, inner=True, anchor=None, anchor_l2=None, evidence="onehot",
               probe_challenge=False, stack_llm=None, calibrate=None, stack_extra=None, flip=None,
               class_names=None) -> KClassFit:
    """Run the K-class rounds and choose the hand-back. ``s0``: round-0 codes of the corpus; ``y_lab``: gold
    codes of the labeled rows ``lab``; ``llm``: optional ``(n, K)`` LLM scores (log-probabilities).
    ``inner=False``: the stack's inputs (refined, and the probe with ``stack_probe``) are not candidates of their
    own; ``anchor``: the LLM's labels are the default and the stack must beat them in ``anchor`` of the paired
    draws (``None``: ``default`` with ``confidence``); ``anchor_l2``: the stack's L2 on every input but the LLM's
    evidence (a stack shrunk towards the LLM; tried, not the default); ``probe_challenge``: with ``inner=False``
    the probe stays a challenger of the anchor beside the stack (tried, not the default); ``stack_extra``: an
    ``(n, K)`` block of per-class scores of the corpus rows (not fitted on the labeled rows' gold labels) that the
    stack reads as one more input, centred per row, with a coefficient shared by all classes (tried: the binary
    refiners' scores of one-vs-rest); ``flip``: one more challenger of the anchor, the LLM's labels with the rows
    the stack confidently contradicts set to the stack's label (:func:`~silr.multiclass.stack.confident_flips`;
    judged with the stack's out-of-fold probabilities on the labeled rows; tried); ``class_names``: the classes'
    names for the notes (codes otherwise)."""
    def named(codes):
        return [str(class_names[c]) for c in codes] if class_names is not None else codes.tolist()

    template = learner or SoftmaxHeadLearner()
    n = s0.size
    rng = np.random.default_rng(seed)
    s0_lab, calibrator, source0 = s0[lab], None, "pseudo-labels"
    if calibrate is not None and llm is not None and np.unique(y_lab).size >= 2:
        l2, guard = calibrate if isinstance(calibrate, tuple) else (calibrate, None)
        c0, c0_lab, cal = calibrated_labels(llm, s0, y_lab, lab, K, l2, seed)
        # "keep_classes": the calibrated labels only when they leave no class without a corpus row (the K sets are
        # the risk's inputs) or the LLM's own labels leave one too
        if guard != "keep_classes" or np.bincount(c0, minlength=K).min() > 0 or np.bincount(s0, minlength=K).min() == 0:
            s0, s0_lab, calibrator = c0, c0_lab, cal
            source0 = "pseudo-labels from the LLM's scores calibrated on the labeled rows (out of fold there)"
    labels, lab_labels = [s0], [s0_lab]
    est0 = _estimate(y_lab, s0_lab, s0, K, n_bootstrap=n_bootstrap, seed=seed, max_condition=max_condition)
    estimates, records = [est0], [_record(0, est0, source=source0)]
    if on_round:
        on_round(records[0])
    learners, scales, aggs = [], [], [None]
    z_sum = np.zeros((n, K))
    stop, detail = "completed", f"completed {rounds} rounds"
    empty = np.flatnonzero(np.bincount(s0, minlength=K) == 0)
    n_planned = rounds
    if empty.size:
        n_planned = 0
        stop, detail = "not_started", (f"refinement not started: no corpus row has pseudo-label class(es) "
                                       f"{named(empty)}, so there are fewer than K unlabeled sets")
        if calibrator is not None:
            detail += (" (round 0 is the LLM's scores calibrated on the labeled rows: there the class offsets "
                       "outweigh the LLM's evidence for those classes, so the labeled rows rate the LLM weak on them)")
    for r in range(1, n_planned + 1):
        est = estimates[-1]
        rk = risk if r == 1 or later_risk is None else later_risk
        weights = KWeights(est.T, est.rates, max_condition=None)
        val_mask = np.zeros(n, dtype=bool)
        if val_fraction > 0:
            val_mask[rng.choice(n, int(round(val_fraction * n)), replace=False)] = True
        t0 = time.perf_counter()
        lr = template.clone().fit(X, labels[-1], weights, risk=rk, val_mask=val_mask, seed=seed * 1000 + r)
        z, scale = standardize_logits(np.asarray(lr.decision_function(X), dtype=np.float64))
        z_sum += z
        agg = z_sum / r
        new = agg.argmax(1)
        rec_kw = dict(source="classifier", risk=rk, learner=lr, n_changed=int(np.sum(new != labels[-1])),
                      seconds=time.perf_counter() - t0)
        est_new = _estimate(y_lab, new[lab], new, K, n_bootstrap=n_bootstrap, seed=seed + r,
                            max_condition=max_condition)
        rec = _record(r, est_new, **rec_kw)
        gone = np.flatnonzero(np.bincount(new, minlength=K) == 0)
        if gone.size:  # that set is empty next round: its terms of the risk are 0 and T's row is the prior's
            rec["note"] = f"no corpus row is labeled class(es) {named(gone)} after this round"
        learners.append(lr)
        scales.append(scale)
        labels.append(new)
        lab_labels.append(new[lab])
        estimates.append(est_new)
        aggs.append(agg)
        records.append(rec)
        if on_round:
            on_round(rec)
        if rec["n_changed"] == 0:
            stop, detail = "converged", f"converged at round {r}: no corpus label changed"
            break
    fit = _hand_back(X, labels, lab_labels, estimates, records, learners, scales, aggs, y_lab, lab, X_lab, K,
                      llm=llm, default=default, confidence=confidence, probe=probe, n_bootstrap=n_bootstrap,
                      seed=seed, stop=stop, detail=detail, stack_bias=stack_bias, stack_probe=stack_probe,
                      inner=inner, anchor=anchor, anchor_l2=anchor_l2, evidence=evidence,
                      probe_challenge=probe_challenge, stack_llm=stack_llm, stack_extra=stack_extra, flip=flip,
                      llm_note="the LLM's labels (round 0)" if calibrator is None else
                      "round 0: the LLM's scores calibrated on the labeled rows (out of fold there)")
    fit.calibrator = calibrator
    return fit


def _hand_back(X, labels, lab_labels, estimates, records, learners, scales, aggs, y_lab, lab, X_lab, K, *, llm,
               default, confidence, probe, n_bootstrap, seed, stop, detail, stack_bias=None,
               stack_probe=False, inner=True, anchor=None, anchor_l2=None, evidence="onehot",
               probe_challenge=False, stack_llm=None, stack_extra=None, flip=None,
               llm_note="the LLM's labels (round 0)") -> KClassFit:
    cands = [Candidate("llm", labels[0], lab_labels[0] == y_lab, llm_note)]
    best_r = 0
    if len(labels) > 1:
        best_r = 1 + int(np.argmax([e.accuracy for e in estimates[1:]]))
        cands.append(Candidate("refined", labels[best_r], lab_labels[best_r] == y_lab,
                               f"round {best_r} (highest estimated accuracy)", {"round": best_r}))
    probe_m = stack_m = None
    multi = np.unique(y_lab).size >= 2
    probe_cand = None
    if probe and multi:
        Xl = _dense(X_lab)
        mu, sd = Xl.mean(0), Xl.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        make = lambda: LogisticRegression(C=1.0, max_iter=2000)  # noqa: E731
        probe_m = make().fit((Xl - mu) / sd, y_lab)
        probe_m.mean_, probe_m.scale_ = mu, sd
        pred = np.concatenate([probe_m.predict((_dense(X[a:a + 65536]) - mu) / sd) for a in range(0, X.shape[0], 65536)])
        oof = _oof((Xl - mu) / sd, y_lab, make, K, seed)
        probe_cand = Candidate("probe", pred, oof == y_lab, "logistic regression on the labeled rows alone")
        if not (stack_probe and best_r):  # a probe inside the stack is not also a candidate of its own
            cands.append(probe_cand)
    if best_r and y_lab.size >= 2:
        E = t_evidence(labels[0], lab, y_lab, K) if llm is None and evidence == "T" else llm_evidence(llm, labels[0], K)
        F = np.hstack([E, aggs[best_r]])
        with_probe = bool(stack_probe and probe_m is not None)
        if with_probe:  # the probe's log-probabilities: out of fold on the labeled rows, the full probe elsewhere
            P = probe_logp(probe_m, X, K)
            Xl = (_dense(X_lab) - probe_m.mean_) / probe_m.scale_
            Pl = np.log(np.clip(_oof(Xl, y_lab, lambda: LogisticRegression(C=1.0, max_iter=2000), K, seed, proba=True),
                                1e-4, None))
            P[lab] = Pl - Pl.mean(1, keepdims=True)
            F = np.hstack([F, P])
        if stack_extra is not None:
            B = np.asarray(stack_extra, dtype=np.float64)
            F = np.hstack([F, B - B.mean(1, keepdims=True)])
        llm_l2, llm_mode = stack_llm if stack_llm is not None else (None, "diag")
        make_stack = lambda: SharedStack(bias_l2=stack_bias, K=K, anchor_l2=anchor_l2, llm_l2=llm_l2,  # noqa: E731
                                         llm_mode=llm_mode)
        stack_m = make_stack().fit(F[lab], y_lab)
        # out of fold on the labeled rows (the probabilities too when the flipped labels need them: the same fits)
        P_lab = _oof(F[lab], y_lab, make_stack, K, seed, proba=True) if flip is not None else None
        oof = P_lab.argmax(1) if P_lab is not None else _oof(F[lab], y_lab, make_stack, K, seed)
        what = "a * LLM evidence + b * refined score" + (" + g * probe log-probability" if with_probe else "") + \
            (" + h * extra score" if stack_extra is not None else "") + \
            (" + a per-class bias" if stack_bias is not None else "") + \
            (f" + a per-class ({llm_mode}) reading of the LLM evidence" if llm_l2 is not None else "")
        cands.append(Candidate("stack", stack_m.predict(F), oof == y_lab,
                               f"{what}, coefficients {' '.join(f'{c:.2f}' for c in stack_m.coef_)} "
                               "(fitted on the labeled rows; out of fold)"))
        if flip is not None:
            P_all = stack_m.predict_proba(F)
            thr = class_thresholds(labels[0], P_all) if flip[0] == "cj" else None
            fixed = confident_flips(labels[0], P_all, flip, thr)
            fixed_lab = confident_flips(lab_labels[0], P_lab, flip, thr)
            cands.append(Candidate("flip", fixed, fixed_lab == y_lab,
                                   f"the LLM's labels with {int(np.sum(fixed != labels[0]))} rows the stack "
                                   f"confidently contradicts ({flip[0]}) set to the stack's label"))
    elif probe_cand is not None and probe_cand not in cands:
        cands.append(probe_cand)
    if y_lab.size == 0:  # nothing to select with: the last kept round (or the LLM's labels)
        last = len(labels) - 1
        return KClassFit(labels=labels, lab_labels=lab_labels, estimates=estimates, records=records,
                         learners=learners, scales=scales, transduction=np.asarray(labels[last], dtype=np.int64),
                         source="refined" if last else "llm", final_round=last, predict_round=last,
                         reason="no gold labels: the last round is handed back without selection", candidates={},
                         stop=stop, stop_detail=detail)
    if probe_challenge and probe_cand is not None and probe_cand not in cands:
        cands.append(probe_cand)
    diag = {c.name: c.corpus_labels for c in cands}
    if not inner and any(c.name == "stack" for c in cands):  # the stack's own inputs do not challenge it
        inside = {"refined"} | ({"probe"} if stack_probe and probe_m is not None and not probe_challenge else set())
        cands = [c for c in cands if c.name not in inside]
    names = [c.name for c in cands]
    if anchor is not None and "stack" in names:  # (and "flip", a second challenger, when asked for)
        default, confidence = "llm", anchor
    base = default if default in names else ("refined" if "refined" in names else ("probe" if "probe" in names else "llm"))
    chosen, reason, table = select(cands, base, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
    final_round = best_r if chosen.name in ("refined", "stack") else 0
    return KClassFit(labels=labels, lab_labels=lab_labels, estimates=estimates, records=records,
                     learners=learners, scales=scales, transduction=np.asarray(chosen.corpus_labels, dtype=np.int64),
                     source=chosen.name, final_round=final_round, predict_round=best_r, reason=reason,
                     candidates=table, probe=probe_m, stack=stack_m if chosen.name == "stack" else None,
                     stop=stop, stop_detail=detail, extra={"candidate_labels": diag})
