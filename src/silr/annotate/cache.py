"""SQLite cache of LLM scores, one row per scored text, committed as produced.

Key: (model id, prompt hash, sha256 of the text).  The model id of a server is ``openai:MODEL@BASE_URL`` and
never contains an API key; the prompt hash covers templates, shots, label words and score-changing settings.
An interrupted run resumes where it stopped and a re-run costs nothing.

A cache file that SQLite cannot read (corrupt, or not a database) is moved aside to
``<file>.corrupt-<timestamp>`` with a warning naming both paths, and a fresh cache is started: the run then
re-scores what it needs instead of failing (delete the moved file when you no longer need it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from silr.cache_keys import text_key  # noqa: F401 (the cache's key; re-exported)

from .types import AnnotationError, ScoreResult

log = logging.getLogger(__name__)

CACHE_FILE = "annotations.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    score REAL,
    abstained INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, prompt_hash, text_sha256)
) WITHOUT ROWID;
"""


class ScoreCache:
    """``get_many``/``put`` scores; ``path=None`` gives an in-memory cache (nothing written to disk)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path).expanduser() if path is not None else None
        self.moved_aside: Path | None = None
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as e:
            if self.path is None:
                raise
            self._conn = self._recover(e)

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            conn = sqlite3.connect(":memory:")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError:
                conn.close()
                raise
        try:
            conn.executescript(_SCHEMA)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(scores)")}
            if not {"model", "prompt_hash", "text_sha256", "score", "abstained", "truncated"} <= cols:
                raise sqlite3.DatabaseError("table 'scores' has an unexpected layout")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _recover(self, err: Exception) -> sqlite3.Connection:
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(self.path, aside)
            for ext in ("-wal", "-shm"):
                side = Path(str(self.path) + ext)
                if side.exists():
                    os.replace(side, Path(str(aside) + ext))
        except OSError as e2:
            raise AnnotationError(
                f"the annotation cache {self.path} is unreadable ({err}) and could not be moved aside ({e2}); "
                "delete it and re-run"
            ) from e2
        self.moved_aside = aside
        log.warning(
            "annotation cache %s was unreadable (%s); moved it to %s (safe to delete) and started a fresh cache",
            self.path, err, aside,
        )
        try:
            return self._open()
        except sqlite3.DatabaseError as e3:
            raise AnnotationError(f"cannot create the annotation cache {self.path}: {e3}") from e3

    # ------------------------------------------------------------------ access
    def get_many(self, model: str, prompt_hash: str, keys: Iterable[str]) -> dict[str, ScoreResult]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, ScoreResult] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start: start + 500]
            q = ("SELECT text_sha256, score, abstained, truncated FROM scores WHERE model=? AND prompt_hash=? "
                 f"AND text_sha256 IN ({','.join('?' * len(chunk))})")
            try:
                rows = self._conn.execute(q, [model, prompt_hash, *chunk]).fetchall()
            except sqlite3.DatabaseError as e:
                raise AnnotationError(f"the annotation cache {self.path} is unreadable ({e}); delete it and re-run") from e
            for k, s, a, t in rows:
                out[k] = ScoreResult(None if s is None else float(s), bool(a), bool(t))
        return out

    def put_many(self, model: str, prompt_hash: str, items: Iterable[tuple[str, ScoreResult]]) -> None:
        """Insert and commit at once (so an interruption loses nothing already scored)."""
        now = time.time()
        rows = [(model, prompt_hash, k, r.score, int(r.abstained), int(r.truncated), now) for k, r in items]
        if not rows:
            return
        try:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?)", rows)
        except sqlite3.DatabaseError as e:
            raise AnnotationError(f"cannot write the annotation cache {self.path}: {e}") from e

    def put(self, model: str, prompt_hash: str, key: str, result: ScoreResult) -> None:
        self.put_many(model, prompt_hash, [(key, result)])

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # pragma: no cover
            pass

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
