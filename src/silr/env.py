"""The process environment silr runs in: models come from local files, never from a hub.

:func:`use_local_models` is the one place that sets it; the command line calls it at start-up and the
library calls it before loading a model, so a user's own setting is kept (``setdefault``).
"""

from __future__ import annotations

import os

__all__ = ["LOCAL_MODEL_ENV", "use_local_models"]

#: Set (unless the user set them): no Hugging Face hub access, no tokenizer thread pools forked under us.
LOCAL_MODEL_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def use_local_models() -> None:
    for key, value in LOCAL_MODEL_ENV.items():
        os.environ.setdefault(key, value)
