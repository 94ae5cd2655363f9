"""Which rows to label, and estimates that get more out of each label.

:mod:`silr.sampling.design`: a stratified sample of the corpus (pseudo-label x LLM-score bins, Neyman
allocation from corpus-only quantities) with its inclusion probabilities. :mod:`silr.sampling.estimators`:
design-weighted, prediction-powered (PPI++) estimates of ``pi``, ``theta_p``, ``theta_n``, a labeling's
accuracy and the gain of a round over round 0, with intervals.
"""

from silr.sampling.design import DesignError, SamplingDesign, make_design, uniform_design
from silr.sampling.estimators import (Estimate, accuracy_covariates, domain_mean, gain_estimate, prediction_covariates,
                                      round_estimates, total_estimate)

__all__ = ["DesignError", "SamplingDesign", "make_design", "uniform_design", "Estimate", "total_estimate",
           "domain_mean", "prediction_covariates", "accuracy_covariates", "round_estimates", "gain_estimate"]
