"""silr: Self-Iterative Label Refinement via robust unlabeled-unlabeled learning."""

__version__ = "0.1.0"

__all__ = ["SelfIterativeRefiner", "HandBack", "StopReason", "__version__"]


def __getattr__(name: str):
    # imported on first use, so `import silr` (and the command line's start-up) stays light
    if name in ("SelfIterativeRefiner", "HandBack", "StopReason"):
        from silr import refine

        return getattr(refine, name)
    raise AttributeError(f"module 'silr' has no attribute {name!r}")
