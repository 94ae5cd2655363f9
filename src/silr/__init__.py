"""silr: Self-Iterative Label Refinement via robust unlabeled-unlabeled learning."""

__version__ = "0.1.0"
