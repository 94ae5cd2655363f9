"""Building the LoRA classifier of :mod:`silr.backbones.lora` from a local transformers folder: folder checks, the
tokenizer (with a pad token), the device and precision, and a fresh ``AutoModelForSequenceClassification`` with a
new LoRA adapter on its attention projections (the head and any weights the folder lacks trained in full)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["check_model_dir", "detect_target_modules", "load_tokenizer", "build_lora_classifier", "LoraClassifier",
           "resolve_device", "autocast_dtype"]

#: attention projections LoRA adapts, by architecture family (first match wins)
_TARGET_SETS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # Llama, Gemma, Mistral, Qwen, OPT, Phi-3 ...
    ("query", "key", "value"),  # BERT, RoBERTa, MiniLM, XLM-R, ELECTRA
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
    ("Wqkv", "Wo"),  # ModernBERT
    ("qkv_proj", "o_proj"),  # Phi-3 fused
    ("query_key_value", "dense"),  # Falcon, GPT-NeoX, BLOOM
    ("c_attn", "c_proj"),  # GPT-2
    ("q", "k", "v", "o"),  # T5
)
#: names of sequence-classification heads in transformers
_HEAD_NAMES = ("score", "classifier", "classification_head", "logits_proj", "sequence_summary")


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def check_model_dir(model_dir: str | Path) -> Path:
    """The folder as a Path; ``FileNotFoundError`` if missing, ``ValueError`` if not a transformers model."""
    p = Path(model_dir).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model folder not found: {p}")
    if not p.is_dir():
        raise ValueError(f"{p} is a file, not a model folder (lora:MODEL_DIR needs a local transformers folder)")
    cfg = p / "config.json"
    if not cfg.exists():
        raise ValueError(
            f"{p} is not a transformers model folder: it has no config.json "
            "(save one with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR))"
        )
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg} is not valid JSON: {e}") from e
    if not model_type:
        raise ValueError(f"{cfg} has no model_type: not a transformers model config")
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")) and not any(p.glob("*.safetensors.index.json")):
        raise ValueError(f"{p} has a config.json but no weights (*.safetensors or *.bin)")
    return p


def detect_target_modules(model: torch.nn.Module) -> list[str]:
    """LoRA target modules for this architecture: its attention projections (else every linear layer)."""
    names = set()
    for full, mod in model.named_modules():
        last = full.rsplit(".", 1)[-1]
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D":
            names.add(last)
    for group in _TARGET_SETS:
        present = [n for n in group if n in names]
        if len(present) >= 2 or (present and len(group) == 1):
            return present
    return ["all-linear"]


def _head_name(model: torch.nn.Module) -> str:
    children = dict(model.named_children())
    for n in _HEAD_NAMES:
        if n in children:
            return n
    raise ValueError(f"cannot find the classification head of {type(model).__name__} (children: {list(children)})")


def _fingerprint(folder: Path) -> str:
    from silr.backbones.sentence import _folder_fingerprint

    return _folder_fingerprint(folder)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, precision: str):
    """bf16 / fp16 autocast on a GPU (``precision`` "auto", "bf16", "fp16"), None on the CPU or with "fp32"."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def use_4bit(device: torch.device, load_in_4bit: bool) -> bool:
    """Whether 4-bit (NF4) loading can be used: asked for, on a CUDA GPU, with bitsandbytes installed."""
    if not load_in_4bit:
        return False
    if device.type != "cuda":
        warnings.warn("load_in_4bit needs a CUDA GPU; loading the model in full precision", stacklevel=3)
        return False
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        warnings.warn("load_in_4bit needs `pip install bitsandbytes`; loading the model in full precision", stacklevel=3)
        return False
    return True


def load_tokenizer(model_dir: Path):
    """The folder's tokenizer, padding with eos (or unk) when it has no pad token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the folder named
        raise ValueError(f"cannot load a tokenizer from {model_dir}: {e}") from e
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            raise ValueError(f"the tokenizer in {model_dir} has no pad, eos or unk token to pad with")
    return tok


@dataclass
class LoraClassifier:
    model: torch.nn.Module
    tokenizer: object
    target_modules: list[str]
    modules_to_save: list[str]
    quantized: bool


def build_lora_classifier(model_dir: Path, *, seed: int, device: torch.device, r: int, alpha: float,
                          dropout: float, target_modules, load_in_4bit: bool, precision: str) -> LoraClassifier:
    """A fresh base model from ``model_dir`` with a new LoRA adapter (seeded)."""
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(model_dir)
    torch.manual_seed(int(seed))
    kw: dict = {"num_labels": 1, "local_files_only": True}
    quantized = use_4bit(device, load_in_4bit)
    if quantized:
        from transformers import BitsAndBytesConfig

        cdtype = autocast_dtype(device, precision) or torch.float16
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=cdtype, bnb_4bit_use_double_quant=True
        )
        kw["device_map"] = {"": device.index or 0}
    else:
        kw["dtype"] = torch.float32
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # "newly initialized head" is expected here
    transformers.utils.logging.disable_progress_bar()  # one model per round: no loading bars
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), output_loading_info=True, **kw
        )
    except ValueError as e:
        raise ValueError(
            f"{model_dir} cannot be loaded as a sequence classifier (AutoModelForSequenceClassification): {e}"
        ) from e
    except OSError as e:
        raise ValueError(f"{model_dir} is not a loadable transformers model: {e}") from e
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    model.config.pad_token_id = tok.pad_token_id
    head = _head_name(model)
    # weights the folder lacks (besides the head) are random: train and save them too
    missing = sorted(
        {k.rsplit(".", 1)[0] for k in info.get("missing_keys", []) if not k.startswith(head + ".") and k != head}
    )
    modules_to_save = [head] + missing
    targets = target_modules or detect_target_modules(model)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets if targets != ["all-linear"] else "all-linear",
        modules_to_save=modules_to_save,
        bias="none",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft's use of deprecated transformers names
        model = get_peft_model(model, cfg)
    if not quantized:
        model.to(device)
    return LoraClassifier(model, tok, targets, modules_to_save, quantized)
