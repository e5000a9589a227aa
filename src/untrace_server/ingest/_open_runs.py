"""Durable holding area for LangSmith runs whose post and patch arrive apart.

One SQLite table in the data dir (``open_runs.db``, WAL, synchronous=FULL), used from a
worker thread. ``apply`` merges a request's posts and patches into the stored rows in
one transaction and returns the runs that became complete (a post and an end time);
the receiver submits those to the queue and only then ``delete``s them, so a crash in
between forwards them again later (at least once; destinations upsert by id).
``expired`` returns rows older than the timeout, complete or not, for the sweeper.

This state is per node: in a fleet, a run's post and patch must reach the same API
node (sticky routing on the run id) or the two halves are forwarded as two partial
traces after the timeout. See docs/receivers.md.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["OpenRun", "OpenRunStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS open_runs (
    customer_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    post BLOB,
    patch BLOB,
    received_at REAL NOT NULL,
    PRIMARY KEY (customer_id, run_id)
)
"""
_encode = msgspec.json.encode
_decode = msgspec.json.decode

OpenRun = tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]  # customer, id, post, patch


def complete(post: dict[str, Any] | None, patch: dict[str, Any] | None) -> bool:
    return post is not None and bool((patch or {}).get("end_time") or post.get("end_time"))


class OpenRunStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    async def start(self) -> None:
        await asyncio.to_thread(self._locked, self._open)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.to_thread(self._locked, close)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    def _apply(
        self, customer: str, posts: dict[str, dict[str, Any]], patches: dict[str, dict[str, Any]]
    ) -> list[OpenRun]:
        db = self._open()
        now = time.time()
        done: list[OpenRun] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for run_id in {**posts, **patches}:
                row = db.execute(
                    "SELECT post, patch FROM open_runs WHERE customer_id=? AND run_id=?",
                    (customer, run_id),
                ).fetchone()
                post = posts.get(run_id) or (_decode(row[0]) if row and row[0] else None)
                if row and row[0] and run_id in posts:  # a re-sent post keeps what it had
                    post = {**_decode(row[0]), **posts[run_id]}
                patch = _decode(row[1]) if row and row[1] else None
                if run_id in patches:
                    patch = {**(patch or {}), **patches[run_id]}
                db.execute(
                    "INSERT OR REPLACE INTO open_runs VALUES (?, ?, ?, ?, ?)",
                    (
                        customer,
                        run_id,
                        _encode(post) if post else None,
                        _encode(patch) if patch else None,
                        now,
                    ),
                )
                if complete(post, patch):
                    done.append((customer, run_id, post, patch))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return done

    async def apply(
        self, customer: str, posts: dict[str, dict[str, Any]], patches: dict[str, dict[str, Any]]
    ) -> list[OpenRun]:
        """Merge and persist (committed on return); the runs now complete."""
        result: list[OpenRun] = await asyncio.to_thread(
            self._locked, self._apply, customer, posts, patches
        )
        return result

    def _delete(self, keys: list[tuple[str, str]]) -> None:
        self._open().executemany("DELETE FROM open_runs WHERE customer_id=? AND run_id=?", keys)

    async def delete(self, keys: list[tuple[str, str]]) -> None:
        if keys:
            await asyncio.to_thread(self._locked, self._delete, keys)

    def _expired(self, before: float, limit: int) -> list[OpenRun]:
        rows = (
            self._open()
            .execute(
                "SELECT customer_id, run_id, post, patch FROM open_runs WHERE received_at < ? "
                "ORDER BY received_at LIMIT ?",
                (before, limit),
            )
            .fetchall()
        )
        return [(c, r, _decode(p) if p else None, _decode(q) if q else None) for c, r, p, q in rows]

    async def expired(self, before: float, limit: int = 500) -> list[OpenRun]:
        result: list[OpenRun] = await asyncio.to_thread(self._locked, self._expired, before, limit)
        return result

    async def count(self) -> int:
        def count() -> int:
            return int(self._open().execute("SELECT count(*) FROM open_runs").fetchone()[0])

        result: int = await asyncio.to_thread(self._locked, count)
        return result
