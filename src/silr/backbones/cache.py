"""On-disk cache of text features, keyed by the encoder and the text's content.

One SQLite file per encoder; each row is ``sha256(text) -> float32 vector``. Rows are committed per chunk
as they are produced, so an interrupted encoding resumes where it stopped and a second run re-encodes
nothing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from silr.cache_keys import default_cache_dir, text_key

__all__ = ["FeatureCache", "default_cache_dir", "text_key"]


class FeatureCache:
    """A content-keyed store of float32 feature vectors of one encoder (``dim`` wide)."""

    def __init__(self, path: str | os.PathLike, dim: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = int(dim)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise RuntimeError(
                f"feature cache {self.path} is unreadable ({e}); delete it to start a fresh cache"
            ) from e

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for start in range(0, len(uniq), 900):
            chunk = uniq[start : start + 900]
            q = f"SELECT key, vec FROM features WHERE key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, chunk):
                v = np.frombuffer(blob, dtype=np.float32)
                if v.size == self.dim:
                    found[k] = v
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO features (key, vec) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0])

    def close(self) -> None:
        self._db.close()
