"""Post-hoc variants of the fine-tuning track, computed from the stored scores of a run (no training).

Each variant reads gold only on the run's 50 labeled rows (to fit a stack); test and corpus gold are read only
to score it. They are ideas for making refinement pay where the LLM is 60-80% accurate (issue 15, "rounds
that add"):

* ``stack_llm_ftllm``    logistic regression on the 50 rows of (LLM score, score of MiniLM fine-tuned on the
                         LLM's labels): the fine-tuned view and the LLM view combined by the labeled rows. The
                         fine-tuned model never saw the 50 rows' gold, so the stack is fitted on clean rows.
* ``stack_llm_ftllm_probe`` the same plus the frozen-feature LR-50 probe's score (out of fold on the 50 rows).
* ``silr_ftr_round<r>``  the fine-tuned refiner's round-r classifier alone (sign of its score), and
  ``silr_ftr_mean``      the mean of all its rounds' standardised scores (the refiner's running mean).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["posthoc_variants"]


def _stack(cols_lab, y_lab, cols_test, cols_corpus, seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(np.column_stack(cols_lab), y_lab)
    return m.predict(np.column_stack(cols_test)), m.predict(np.column_stack(cols_corpus))


def _probe_scores(inp, seed: int):
    """Frozen MiniLM LR-50 probe: out-of-fold scores on the labeled rows, full-fit scores elsewhere."""
    from sklearn.model_selection import StratifiedKFold

    from silr.backbones import get_backbone
    from silr.bench.methods import logreg_small

    bb = get_backbone("minilm", progress=False)
    Xc, Xt = bb.transform(inp["texts"]), bb.transform(inp["test_texts"])
    lab, y = inp["lab"], inp["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = logreg_small(Xc, seed=seed).fit(Xc[lab], y[lab])
        oof = np.zeros(lab.size)
        k = int(min(5, np.bincount(y[lab]).min()))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(Xc[lab], y[lab]):
            oof[te] = logreg_small(Xc, seed=seed).fit(Xc[lab][tr], y[lab][tr]).decision_function(Xc[lab][te])
    return oof, full.decision_function(Xt), full.decision_function(Xc)


def posthoc_variants(inp: dict, run_dir: Path, seed: int, *, probe: bool = True) -> dict:
    """Accuracies (test, corpus) of the variants above for one run; variants whose scores are missing are absent."""
    name = run_dir / f"{inp['name']}__seed{seed}"
    lab, y, yt = inp["lab"], inp["y"], inp["yt"]
    out: dict = {}
    f = Path(f"{name}__ft_llm.npz")
    if f.is_file():
        z = np.load(f)
        ev, evt = inp["llm_score"], inp["llm_score_test"]
        pt, pc = _stack([ev[lab], z["corpus"][lab]], y[lab], [evt, z["test"]], [ev, z["corpus"]], seed)
        out["stack_llm_ftllm"] = {"test_acc": float(np.mean(pt == yt)), "corpus_acc": float(np.mean(pc == y))}
        if probe:
            oof, pr_t, pr_c = _probe_scores(inp, seed)
            pt, pc = _stack([ev[lab], z["corpus"][lab], oof], y[lab], [evt, z["test"], pr_t], [ev, z["corpus"], pr_c], seed)
            out["stack_llm_ftllm_probe"] = {"test_acc": float(np.mean(pt == yt)), "corpus_acc": float(np.mean(pc == y))}
    f = Path(f"{name}__silr_ftr.npz")
    if f.is_file():
        z = np.load(f)
        raw = z["test_raw"]
        for r in range(raw.shape[0]):
            out[f"silr_ftr_round{r + 1}"] = {"test_acc": float(np.mean((raw[r] > 0) == yt))}
        if raw.shape[0]:
            out["silr_ftr_mean"] = {"test_acc": float(np.mean((raw.mean(0) > 0) == yt))}
    return out
