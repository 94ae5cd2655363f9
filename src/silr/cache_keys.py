"""Where silr caches things, and the key of a text in every cache (scores, features).

Both caches (the annotator's scores, :mod:`silr.annotate.cache`; the encoders' features,
:mod:`silr.backbones.cache`) key a text by :func:`text_key` and live under :func:`default_cache_dir`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "default_cache_dir", "text_key"]

#: Environment variable that moves the cache folder.
CACHE_DIR_ENV = "SILR_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$SILR_CACHE_DIR`` (``~`` expanded) or ``~/.cache/silr``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "silr"


def text_key(text: str) -> str:
    """The SHA-256 of the text's UTF-8 bytes (lone surrogates kept), in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
