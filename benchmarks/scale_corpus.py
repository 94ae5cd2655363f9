"""The real corpus of benchmarks/SCALE.md: SST-2 + MR (every split of /work/shared/data/{sst2,mr}), English movie
sentiment: 20,264 rows with gold labels (the two sources share about 4k texts; both copies are kept, as a
user's corpus would). Pseudo-labels come from a stated noise model
(class-conditional flips: a gold positive becomes negative with p=0.25, a gold negative positive with p=0.15,
numpy seed 0), the 'LLM score' is a noisy logit consistent with them. The 1M-row corpus resamples these rows
with replacement (seed 1); its features are the cached MiniLM vectors of the unique texts.

    python benchmarks/scale_corpus.py  # writes benchmarks/scale/corpus20k.parquet and encodes it with MiniLM (cached)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path("/work/shared/data")
HERE = Path(__file__).resolve().parent / "scale"
FLIP_POS, FLIP_NEG = 0.25, 0.15


def real_corpus() -> pd.DataFrame:
    parts = [pd.read_csv(f) for d in ("sst2", "mr") for f in sorted((DATA / d).glob("*.csv"))]
    df = pd.concat(parts, ignore_index=True)[["text", "label"]]
    df["text"] = df["text"].astype(str).str.strip()
    df = df[df["text"].str.len() > 0].reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = df["label"].to_numpy().astype(int)
    flip = np.where(y == 1, rng.random(len(y)) < FLIP_POS, rng.random(len(y)) < FLIP_NEG)
    pseudo = np.where(flip, 1 - y, y)
    df["pseudo_label"] = pseudo
    df["llm_score"] = np.where(pseudo == 1, 1.0, -1.0) * rng.gamma(2.0, 1.0, len(y))
    return df.rename(columns={"label": "gold"})


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    df = real_corpus()
    out = HERE / "corpus20k.parquet"
    df.to_parquet(out, index=False)
    print(f"{len(df)} rows -> {out}; pseudo-label accuracy {(df.pseudo_label == df.gold).mean():.3f}")
    if "--encode" in sys.argv:
        import torch

        torch.set_num_threads(1)
        from silr.backbones import get_backbone

        bb = get_backbone("minilm", progress=False)
        X = bb.transform(df["text"].tolist())
        print("encoded", X.shape)


if __name__ == "__main__":
    main()
