"""Honest selection of what the refiner hands back, from the small labeled sample.

:mod:`silr.selection.candidates`: the candidate labelings (LLM, refined, probe, stack), their out-of-fold
correctness on the labeled rows and the paired-bootstrap choice between them. :mod:`silr.selection.handback`:
:class:`HandBackModel`, the one object that makes the choice in ``fit`` and applies it in ``predict``.
"""

from silr.selection.candidates import (
    SPARSE_PROBE_C,
    Candidate,
    design_sample_weight,
    fit_probe,
    is_threshold_of,
    probe_candidate,
    probe_decision,
    probe_scores,
    select,
    stack_candidate,
    threshold_oof_correct,
    threshold_oof_predict,
)
from silr.selection.handback import SELECTIONS, HandBack, HandBackModel, ProbeCache

__all__ = ["Candidate", "design_sample_weight", "fit_probe", "probe_decision", "probe_candidate", "probe_scores", "stack_candidate",
           "threshold_oof_correct", "threshold_oof_predict", "is_threshold_of", "select", "SPARSE_PROBE_C",
           "HandBack", "HandBackModel", "ProbeCache", "SELECTIONS"]
