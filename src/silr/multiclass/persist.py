"""Saving and loading a fitted K-class (K > 2) :class:`~silr.refine.SelfIterativeRefiner`, without pickle.

The same folder layout as the binary model (:mod:`silr.persist`): ``config.json`` (format
``"silr-refiner-kclass/1"``: parameters, classes, the hand-back, each kept round's head config and logit scale,
the stack's two coefficients) and ``weights.safetensors`` (each kept round's softmax head, ``round_{j}.*``, and
the probe's arrays, ``probe.*``). Only what ``predict`` needs is kept (the corpus history lives in the run
folder's ``labels.csv`` / ``rounds.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["FORMAT_K", "save_kclass", "load_kclass", "llm_input", "evidence_mismatch", "score_matrix"]

FORMAT_K = "silr-refiner-kclass/1"


def _head_config(learner) -> dict:
    m = learner.module_
    return {"kind": "softmax-head", "params": learner.get_params(), "n_features": int(m.out.in_features),
            "K": int(m.out.out_features)}


def _head_from_state(config: dict, state: dict):
    from silr.multiclass.learner import SoftmaxHeadLearner, _KHead

    h = SoftmaxHeadLearner(**config.get("params", {}))
    d, K = int(config["n_features"]), int(config["K"])
    h.module_ = _KHead(d, K, torch.zeros(d), torch.ones(d))
    h.module_.load_state_dict(state)
    h.module_.eval()
    h.history_, h.best_epoch_ = [], None
    return h


def save_kclass(refiner, path) -> None:
    """Write ``config.json`` and ``weights.safetensors`` of a fitted K-class refiner into folder ``path``."""
    from safetensors.torch import save_file

    from silr.persist import json_params

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hb = refiner.handback_
    k = int(hb.predict_round)
    state: dict[str, torch.Tensor] = {}
    heads = []
    for j in range(k):
        for name, t in hb.learners[j].module_.state_dict().items():
            state[f"round_{j + 1}.{name}"] = t.detach().clone().contiguous()
        heads.append(_head_config(hb.learners[j]))
    probe = None
    if hb.probe is not None:
        p = hb.probe
        for name, v in (("mean", p.mean_), ("scale", p.scale_), ("coef", p.coef_), ("intercept", p.intercept_)):
            state[f"probe.{name}"] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
        probe = {"classes": np.asarray(p.classes_).astype(int).tolist()}
    config = {
        "format": FORMAT_K,
        "params": json_params(refiner),
        "classes": np.asarray(refiner.classes_).tolist(),
        "K": int(hb.K),
        "final_source": str(hb.source),
        "final_round": int(hb.final_round),
        "predict_round": k,
        "scales": [float(s) for s in hb.scales[:k]],
        "learners": heads,
        "stack": None if hb.fit_stack is None else {
            "coef": [float(c) for c in hb.fit_stack.coef_], "l2": float(hb.fit_stack.l2),
            "bias_l2": hb.fit_stack.bias_l2, "bias": [float(b) for b in hb.fit_stack.bias_],
            "llm_l2": hb.fit_stack.llm_l2, "llm_mode": hb.fit_stack.llm_mode,
            "llm_dev": [float(d) for d in getattr(hb.fit_stack, "llm_dev_", [])]},
        "probe": probe,
        "calibrator": None if getattr(hb, "calibrator", None) is None else {
            "coef": [float(c) for c in hb.calibrator.coef_], "bias": [float(b) for b in hb.calibrator.bias_],
            "bias_l2": hb.calibrator.bias_l2},
        "selection": hb.reason,
        "llm_input": getattr(hb, "llm_input", None),
        "n_features": int(getattr(refiner, "n_features_in_", heads[0]["n_features"] if heads else 0)),
    }
    if state:
        save_file(state, str(path / "weights.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2))


def load_kclass(refiner, config: dict, state: dict, path: Path):
    """Set ``refiner``'s fitted attributes (a fresh instance made from ``config["params"]``) from a K-class
    model folder's ``config`` and ``state``; returns it."""
    from sklearn.linear_model import LogisticRegression

    from silr.multiclass.estimator import KHandBack
    from silr.multiclass.stack import SharedStack

    K = int(config["K"])
    classes = np.asarray(config["classes"])
    if classes.size != K or K < 3:
        raise ValueError(f"{path}: a K-class model needs K >= 3 classes; config has K={K} and {classes.size} classes")
    k = int(config["predict_round"])
    learners = []
    for j, lc in enumerate(config["learners"]):
        prefix = f"round_{j + 1}."
        sub = {name[len(prefix):]: t for name, t in state.items() if name.startswith(prefix)}
        if lc.get("kind") != "softmax-head":
            raise ValueError(f"{path}: round {j + 1} has a learner of kind {lc.get('kind')!r}; K-class models hold "
                             "softmax heads")
        learners.append(_head_from_state(lc, sub))
    if len(learners) != k:
        raise ValueError(f"{path}: predict_round is {k} but {len(learners)} rounds are saved; the folder is damaged")
    stack = None
    if config.get("stack"):
        sc = config["stack"]
        if not isinstance(sc, dict) or "coef" not in sc:
            raise ValueError(f"{path}: the stack has no coefficients ('coef'); the folder is damaged")
        stack = SharedStack(l2=float(sc.get("l2", 1e-2)), bias_l2=sc.get("bias_l2"), K=K, llm_l2=sc.get("llm_l2"),
                            llm_mode=sc.get("llm_mode", "diag"))
        stack.coef_ = np.asarray(sc["coef"], dtype=np.float64)
        stack.bias_ = np.asarray(sc.get("bias") or np.zeros(K), dtype=np.float64)
        stack.llm_dev_ = np.asarray(sc.get("llm_dev") or [], dtype=np.float64)
        stack.K_, stack.classes_ = K, np.arange(K)
        if stack.llm_dev_.size != stack._n_dev():
            raise ValueError(f"{path}: the stack's per-class reading of the LLM evidence has {stack.llm_dev_.size} "
                             f"values where {stack._n_dev()} are expected; the folder is damaged")
        if stack.coef_.size > 2 and not config.get("probe"):
            raise ValueError(f"{path}: the stack takes the probe's scores but no probe is saved; the folder is damaged")
    calibrator = None
    if config.get("calibrator"):
        cc = config["calibrator"]
        if not isinstance(cc, dict) or not {"coef", "bias"} <= set(cc):
            raise ValueError(f"{path}: round 0's calibrator needs its scale ('coef') and {K} offsets ('bias'); the "
                             "folder is damaged")
        calibrator = SharedStack(bias_l2=cc.get("bias_l2", 0.1), K=K)
        calibrator.coef_ = np.asarray(cc["coef"], dtype=np.float64).ravel()
        calibrator.bias_ = np.asarray(cc["bias"], dtype=np.float64).ravel()
        calibrator.K_, calibrator.classes_ = K, np.arange(K)
        if calibrator.coef_.size != 1 or calibrator.bias_.size != K:
            raise ValueError(f"{path}: round 0's calibrator needs 1 scale and {K} offsets; the folder is damaged")
    probe = None
    if config.get("probe"):
        probe = LogisticRegression(C=1.0, max_iter=2000)
        probe.classes_ = np.asarray(config["probe"]["classes"], dtype=np.int64)
        probe.coef_ = state["probe.coef"].numpy()
        probe.intercept_ = state["probe.intercept"].numpy()
        probe.n_features_in_ = probe.coef_.shape[1]
        probe.mean_, probe.scale_ = state["probe.mean"].numpy(), state["probe.scale"].numpy()
    refiner.handback_ = KHandBack(K=K, source=config["final_source"], final_round=int(config["final_round"]),
                                  predict_round=k, learners=learners, scales=config["scales"], stack=stack,
                                  probe=probe, reason=config.get("selection", ""), calibrator=calibrator)
    refiner.handback_.llm_input = llm_input(config)
    refiner.classes_ = classes
    refiner.n_classes_ = K
    refiner.takes_texts_ = False
    refiner.learners_, refiner.scales_ = learners, list(config["scales"])
    if config.get("n_features"):
        refiner.n_features_in_ = int(config["n_features"])
    refiner.labels_ = np.zeros((0, 0), dtype=np.int64)  # marks fitted; the corpus labels live in labels.csv
    return refiner


def is_kclass_model(run_dir) -> bool:
    """A run folder (or its ``model/``) holding a saved K-class refiner."""
    d = Path(run_dir)
    cfile = (d / "model" if (d / "model").is_dir() else d) / "config.json"
    try:
        return json.loads(cfile.read_text()).get("format") == FORMAT_K
    except (OSError, ValueError, AttributeError):
        return False


def llm_input(config: dict) -> str | None:
    """What a saved K-class model's fit read as the LLM's evidence: "scores" (per-class scores), "labels" (its
    labels alone) or None (unknown: a model saved before this was recorded, and nothing in it tells)."""
    if config.get("llm_input") in ("scores", "labels"):
        return config["llm_input"]
    if config.get("calibrator") or (config.get("stack") or {}).get("llm_l2") is not None:
        return "scores"  # round 0's calibrator and the stack's K x K reading exist only with scores
    return None


def evidence_mismatch(config: dict, *, labels_given: bool, column: str) -> str | None:
    """The error when ``silr predict --score-col column`` gives a saved K-class model evidence of another kind
    than its fit read, where the hand-back reads it (the LLM's calibrated labels, the stack); else None. A one-hot
    of labels read by a calibrator or stack fitted on scores (or the reverse) gives wrong labels silently."""
    kind, src = llm_input(config), config.get("final_source")
    if src not in ("llm", "stack") or kind is None or (src == "llm" and not config.get("calibrator")):
        return None  # without a calibrator the LLM's labels are the argmax of either kind
    what = "the LLM's calibrated labels" if src == "llm" else "the stack"
    if kind == "scores" and labels_given:
        return (f"--score-col '{column}' is a column of labels, but this run was refined with the LLM's per-class "
                f"scores and hands back {what}, which reads them: give the prefix of the new rows' per-class score "
                "columns (PREFIX<class>, e.g. llm_logp_)")
    if kind == "labels" and not labels_given and src == "stack":
        return (f"--score-col '{column}' names per-class score columns, but this run was refined with the LLM's "
                "labels alone and its stack reads a one-hot of them: give a column of the new rows' LLM labels")
    return None


def kclass_evidence(df, column: str, classes, *, what: str) -> np.ndarray:
    """The LLM evidence of new rows for a K-class model's stack: ``column`` is either a column of LLM labels
    (class names: a one-hot, as ``fit`` uses without scores) or the prefix of per-class score columns
    ``<column><class>`` (e.g. ``llm_logp_`` from ``silr annotate``)."""
    from silr.io import InputError

    classes = [str(c) for c in classes]
    if column in df.columns:
        import pandas as pd

        from silr.multiclass.files import class_names

        v = pd.Series(class_names(df[column]))  # as the run names its classes ('1.0' is the class '1')
        bad = ~v.isin(classes)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{what}: column '{column}' row {i + 2} is {df[column].iloc[i]!r}, not one of the "
                             f"model's classes ({', '.join(classes)})")
        return np.eye(len(classes))[v.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)]
    cols = [f"{column}{c}" for c in classes]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{what} has no column '{column}' (LLM labels) nor '{missing[0]}' (per-class scores "
                         f"{column}<class>)")
    return score_matrix(df, cols, what=what, option=f"--score-col {column}")


def score_matrix(df, cols, *, what: str, option: str) -> np.ndarray:
    """The per-class score columns ``cols`` of ``df`` as an ``(n, K)`` float matrix; a cell that is not a finite
    number (empty, NaN, -inf, text: an abstained row) is an InputError naming the file, column, row and option."""
    import pandas as pd

    from silr.io import InputError

    E = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64) for c in cols])
    bad = ~np.isfinite(E)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        v = df[cols[j]].iloc[i]
        v = repr(v) if isinstance(v, str) else v
        raise InputError(f"{what}: column '{cols[j]}' row {i + 2} is {v}, not a finite number "
                         f"({option}: every row needs a finite score per class; drop or re-score abstained rows)")
    return E
