"""K-class refinement from one LLM pass (issue 18).

:mod:`~silr.multiclass.tmatrix`: the noise matrix ``T[k, c] = P(y = c | pseudo-label = k)`` from the labeled rows;
:mod:`~silr.multiclass.risk`: the corrected risk from the K pseudo-label sets and its robust per-class correction;
:mod:`~silr.multiclass.learner`: a softmax head trained with it; :mod:`~silr.multiclass.loop`: the rounds and the
hand-back for K > 2 (``SelfIterativeRefiner.fit`` calls it; K = 2 stays on the binary path).
"""

from silr.multiclass.risk import KWeights, class_partial_risks, kclass_batch_risk, kclass_risk, robust_kclass_risk
from silr.multiclass.tmatrix import (DEFAULT_MAX_CONDITION, TEstimate, TMatrixError, binary_T, condition_number,
                                     estimate_T, regularize_T)

__all__ = ["TEstimate", "TMatrixError", "estimate_T", "binary_T", "condition_number", "regularize_T",
           "DEFAULT_MAX_CONDITION", "KWeights", "class_partial_risks", "kclass_risk", "robust_kclass_risk",
           "kclass_batch_risk"]
