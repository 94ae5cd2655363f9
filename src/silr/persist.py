"""Saving and loading a fitted :class:`~silr.refine.SelfIterativeRefiner`, without pickle.

A model folder holds ``config.json`` (format ``"silr-refiner/1"``: parameters, the hand-back, each kept round's
learner config) and ``weights.safetensors`` (each round's learner state, ``round_{j}.*``, and the probe's
arrays, ``probe.*``). Folders written before the learner became one parameter (with ``hidden``, ``epochs``,
... among the parameters) load the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from silr.learners import HeadLearner
from silr.selection import HandBack, HandBackModel

__all__ = ["FORMAT", "save_refiner", "load_refiner", "json_params", "learner_spec"]

FORMAT = "silr-refiner/1"

#: the head's parameters that were refiner parameters before the ``learner`` parameter (old model folders)
_LEGACY_HEAD_PARAMS = ("hidden", "epochs", "lr", "weight_decay", "batch_size", "slope")


def learner_spec(learner) -> dict | None:
    """JSON description of the ``learner`` parameter (``None`` for the default head)."""
    if learner is None:
        return None
    spec = {"kind": "head" if isinstance(learner, HeadLearner) else type(learner).__name__}
    if hasattr(learner, "get_params"):
        spec["params"] = {k: v for k, v in learner.get_params().items() if _jsonable(v)}
    return spec


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def json_params(refiner) -> dict:
    """The refiner's parameters as JSON (the learner as :func:`learner_spec`)."""
    params = refiner.get_params(deep=False)
    params["learner"] = learner_spec(params.get("learner"))
    return params


def save_refiner(refiner, path) -> None:
    """Write ``config.json`` and ``weights.safetensors`` into folder ``path``."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(refiner)
    if len(refiner.classes_) > 2:  # K > 2 classes: silr.multiclass.persist (format silr-refiner-kclass/1)
        from silr.multiclass.persist import save_kclass

        return save_kclass(refiner, path)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hb: HandBackModel = refiner.handback_
    k = hb.predict_round
    state: dict[str, torch.Tensor] = {}
    learners = []
    for j in range(k):
        for name, t in refiner.learners_[j].state_dict().items():
            state[f"round_{j + 1}.{name}"] = t
        learners.append(refiner.learners_[j].config())
    probe = None
    if hb.probe is not None and (hb.source is HandBack.PROBE or (hb.stack or {}).get("probe")):
        for name in ("mean", "scale", "coef"):
            state[f"probe.{name}"] = torch.from_numpy(np.asarray(hb.probe[name], dtype=np.float64))
        probe = {"intercept": hb.probe["intercept"]}
    config = {
        "format": FORMAT,
        "params": json_params(refiner),
        "predict_round": k,
        "final_round": hb.final_round,
        "scales": refiner.scales_[:k],
        "platt": list(hb.platt),
        "learners": learners,
        "final_source": str(hb.source),
        "stack": hb.stack,
        "probe": probe,
        "classes": np.asarray(refiner.classes_).tolist(),
        "takes_texts": bool(getattr(refiner, "takes_texts_", False)),
    }
    from silr.io import atomic_path, atomic_write_text

    if state:
        with atomic_path(path / "weights.safetensors") as tmp:  # also the mode: safetensors creates files 0600
            save_file(state, str(tmp))
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))


def _read_config(cfile: Path) -> dict:
    try:
        config = json.loads(cfile.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfile} is not a readable silr model config: {e}") from None
    from silr.multiclass.persist import FORMAT_K

    if not isinstance(config, dict) or config.get("format") not in (FORMAT, FORMAT_K):
        fmt = config.get("format") if isinstance(config, dict) else None
        raise ValueError(f"{cfile} is not a silr model (format={fmt!r})")
    # a silr model is data only: a config asking for code to run was not written by silr
    code_keys = sorted({"auto_map", "trust_remote_code"} & (set(config) | set(config.get("params") or {})))
    if code_keys:
        raise ValueError(f"{cfile} asks for custom code ({', '.join(code_keys)}); silr models never run code "
                         "from a model folder, so this folder is refused")
    return config


def _params(cls, config: dict, cfile: Path) -> dict:
    params = dict(config.get("params") or {})
    legacy = {k: params.pop(k) for k in _LEGACY_HEAD_PARAMS if k in params}
    spec = params.pop("learner", None)
    unknown = sorted(set(params) - set(cls().get_params()))
    if unknown:
        raise ValueError(f"{cfile} has unknown parameters {unknown}: not a model written by this silr")
    if legacy:  # a folder from before the learner parameter: its head settings become the learner
        params["learner"] = HeadLearner(**legacy)
    elif isinstance(spec, dict) and spec.get("kind") == "head":
        params["learner"] = HeadLearner(**(spec.get("params") or {}))
    elif isinstance(spec, dict) and spec.get("kind") == "FineTuneLearner":
        from silr.finetune import FineTuneLearner

        params["learner"] = FineTuneLearner(**(spec.get("params") or {}))
    return params


def load_refiner(cls, path, *, learner_loader: Callable[[dict, dict], object] | None = None):
    """Reload a refiner saved by :func:`save_refiner` for prediction (the corpus history is not kept).

    ``learner_loader(config, state)`` rebuilds learners that are not the head (e.g. a backbone's LoRA learner).
    """
    path = Path(path)
    cfile = path / "config.json"
    config = _read_config(cfile)
    self = cls(**_params(cls, config, cfile))
    k = int(config["predict_round"])
    wfile = path / "weights.safetensors"
    try:
        state = load_file(str(wfile)) if wfile.exists() else {}
    except Exception as e:  # safetensors raises its own error type on a damaged file
        raise ValueError(f"{wfile} is not a readable safetensors file ({e}); the model folder is damaged") from None
    from silr.multiclass.persist import FORMAT_K, load_kclass

    if config["format"] == FORMAT_K:
        return load_kclass(self, config, state, path)
    self.learners_ = []
    kinds = set()
    for j, lc in enumerate(config["learners"]):
        prefix = f"round_{j + 1}."
        sub = {name[len(prefix):]: t for name, t in state.items() if name.startswith(prefix)}
        kinds.add(lc.get("kind"))
        if lc.get("kind") == "head":
            self.learners_.append(HeadLearner.from_state(lc, sub))
        elif lc.get("kind") == "finetune":  # silr's own fine-tuning learner (rebuilt from its model folder)
            from silr.finetune import FineTuneLearner

            self.learners_.append(FineTuneLearner.from_state(lc, sub))
        elif learner_loader is None:
            raise ValueError(f"{path}: round {j + 1} has a learner of kind {lc.get('kind')!r}; its backbone must load it")
        else:
            self.learners_.append(learner_loader(lc, sub))
    self.scales_ = list(config["scales"])
    probe = None
    if config.get("probe"):
        probe = {n: state[f"probe.{n}"].numpy() for n in ("mean", "scale", "coef")}
        probe["intercept"] = config["probe"]["intercept"]
    self.handback_ = HandBackModel(
        source=HandBack(config.get("final_source") or "refined"), final_round=int(config["final_round"]),
        predict_round=k, reason="", stack=config.get("stack"), probe=probe, platt=tuple(config["platt"]),
        stack_input=(config.get("stack") or {}).get("input"),
    )
    self.classes_ = np.asarray(config.get("classes", [0, 1]))
    self.takes_texts_ = bool(config.get("takes_texts", bool(kinds - {"head"})))
    if kinds == {"head"} and self.learners_:
        self.n_features_in_ = int(config["learners"][0]["n_features"])
    self.labels_ = np.zeros((0, 0), dtype=np.int8)  # marks fitted; the corpus labels live in labels.csv
    return self
