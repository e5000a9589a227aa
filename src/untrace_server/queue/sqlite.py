"""The embedded durable queue: one SQLite file in WAL mode, one writer thread, group commit.

Every operation that writes (publish, lease, ack, nack, dead, replay, prune) is a small
function run on the single writer thread (``_sqlite_writer.GroupCommitWriter``):
concurrent publishers share commits, and each publish returns only after its rows are
on disk.

Reads that need no consistency with writes (stats) use the same thread too: SQLite
serialises writers anyway, and one connection keeps the design simple.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from untrace_server.errors import QueueFull, QueueUnavailable
from untrace_server.observability import metrics
from untrace_server.queue._sqlite_writer import GroupCommitWriter
from untrace_server.queue.base import (
    TRACES_TOPIC,
    DeadLetter,
    DeliveryRecord,
    Message,
    MessageId,
    QueueStats,
)

__all__ = ["SqliteQueue"]

T = TypeVar("T")

READY, ACKED, DEAD = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    payload BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    created_at REAL NOT NULL,
    done_at REAL,
    error TEXT,
    leased INTEGER NOT NULL DEFAULT 0
);
-- leases walk this in id order and stop after LIMIT rows: no sort of the whole backlog
DROP INDEX IF EXISTS messages_ready;
CREATE INDEX IF NOT EXISTS messages_ready_by_id ON messages (topic, state, id);
-- only acked rows are pruned or evicted by age: a partial index that a publish never touches
DROP INDEX IF EXISTS messages_done;
CREATE INDEX IF NOT EXISTS messages_acked ON messages (done_at) WHERE state = 1;
-- trace status and replay look deliveries up by trace id. Ids are random, so indexing the
-- `traces` topic too would put a random index insert on every publish of the ingest path
-- (measured: 20k vs 34k OTLP spans/s, docs/benchmarks.md); its backlog is scanned instead.
DROP INDEX IF EXISTS messages_key;
CREATE INDEX IF NOT EXISTS messages_delivery_key ON messages (key) WHERE topic != 'traces';
"""


class SqliteQueue:
    # Acked deliveries are kept (payload emptied) for the retention, with the last error
    # of every nack, so the status of a trace per destination can be answered.
    supports_status = True

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        budget_bytes: int = 1 << 30,
        retention_s: float = 7 * 86400,
        retain_topics: Sequence[str] = (TRACES_TOPIC,),
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.budget_bytes = budget_bytes
        self.retention_s = retention_s
        self.retain_topics = frozenset(retain_topics)
        self._writer = GroupCommitWriter(
            self._open, name="untrace-sqlite-queue", after_commit=self._after_commit
        )
        self._page_size = 4096
        self._used_bytes = 0
        self._events: dict[str, asyncio.Event] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._writer.start()
        except QueueUnavailable as exc:
            raise QueueUnavailable(f"cannot open queue at {self.path}: {exc}") from None

    async def close(self) -> None:
        await self._writer.close()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        # This file belongs to this process alone (single-node mode): leases held by a
        # previous process that died are released now instead of after their timeout.
        conn.execute(
            "UPDATE messages SET leased = 0, visible_at = ? WHERE leased = 1 AND state = 0",
            (time.time(),),
        )
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        self._refresh_usage(conn)
        return conn

    def _refresh_usage(self, conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        self._used_bytes = (pages - free) * self._page_size

    def _after_commit(self, conn: sqlite3.Connection, commits: int) -> None:
        if commits % 64 == 0:
            self._refresh_usage(conn)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.call(fn)

    # -- operations ---------------------------------------------------------------

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[MessageId]:
        if not items:
            return []
        size = sum(len(p) + len(k) + 64 for k, p in items)
        if self._used_bytes + size > self.budget_bytes:
            await self._call(lambda conn: self._make_room(conn, size))
        if self._used_bytes + size > self.budget_bytes:
            raise QueueFull(
                f"queue disk budget of {self.budget_bytes} bytes is used up", retry_after=5.0
            )
        now = time.time()

        def op(conn: sqlite3.Connection) -> list[MessageId]:
            conn.executemany(
                "INSERT INTO messages (topic, key, payload, visible_at, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(topic, k, p, now, now) for k, p in items],
            )
            # one writer, one transaction: the rows got consecutive rowids
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            ids: list[MessageId] = list(range(last - len(items) + 1, last + 1))
            self._used_bytes += size
            return ids

        ids = await self._call(op)
        self._notify(topic)
        return ids

    async def lease(self, topic: str, max_items: int, visibility_s: float) -> list[Message]:
        def op(conn: sqlite3.Connection) -> list[Message]:
            now = time.time()
            rows = conn.execute(
                "UPDATE messages SET visible_at = ?, attempts = attempts + 1, leased = 1"
                " WHERE id IN ("
                " SELECT id FROM messages WHERE topic = ? AND state = 0 AND visible_at <= ?"
                " ORDER BY id LIMIT ?) RETURNING id, key, payload, attempts, created_at",
                (now + visibility_s, topic, now, max_items),
            ).fetchall()
            rows.sort(key=lambda r: r[0])
            return [Message(r[0], topic, r[2], r[3], r[4], r[1]) for r in rows]

        return await self._call(op)

    async def ack(self, ids: Sequence[MessageId]) -> None:
        if not ids:
            return
        retain = list(self.retain_topics)

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            marks = ",".join("?" * len(retain)) or "''"
            conn.executemany(
                "UPDATE messages SET state = 1, leased = 0, done_at = ?"
                f" WHERE id = ? AND topic IN ({marks})",
                [(now, i, *retain) for i in ids],
            )
            conn.executemany(
                "UPDATE messages SET state = 1, leased = 0, done_at = ?, payload = X''"
                f" WHERE id = ? AND topic NOT IN ({marks})",
                [(now, i, *retain) for i in ids],
            )

        await self._call(op)

    async def nack(
        self, ids: Sequence[MessageId], delay_s: float, error: str | None = None
    ) -> None:
        if not ids:
            return

        def op(conn: sqlite3.Connection) -> None:
            when = time.time() + delay_s
            conn.executemany(
                "UPDATE messages SET visible_at = ?, leased = 0, error = coalesce(?, error)"
                " WHERE id = ? AND state = 0",
                [(when, None if error is None else error[:4000], i) for i in ids],
            )

        await self._call(op)

    async def dead(self, ids: Sequence[MessageId], error: str) -> None:
        if not ids:
            return

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.executemany(
                "UPDATE messages SET state = 2, leased = 0, done_at = ?, error = ? WHERE id = ?",
                [(now, error[:4000], i) for i in ids],
            )

        await self._call(op)

    async def list_dead(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        def op(conn: sqlite3.Connection) -> list[DeadLetter]:
            sql = (
                "SELECT id, topic, key, payload, attempts, error, created_at, done_at "
                "FROM messages WHERE state = 2"
            )
            args: list[Any] = []
            if topic is not None:
                sql += " AND topic = ?"
                args.append(topic)
            sql += " ORDER BY id LIMIT ?"
            args.append(limit)
            return [DeadLetter(*row) for row in conn.execute(sql, args).fetchall()]

        return await self._call(op)

    async def replay_dead(
        self, topic: str | None = None, ids: Sequence[MessageId] | None = None
    ) -> int:
        def op(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE messages SET state = 0, attempts = 0, visible_at = ?, error = NULL,"
                " done_at = NULL WHERE state = 2"
            )
            args: list[Any] = [time.time()]
            if topic is not None:
                sql += " AND topic = ?"
                args.append(topic)
            if ids is not None:
                sql += f" AND id IN ({','.join('?' * len(ids)) or 'NULL'})"
                args.extend(ids)
            cur = conn.execute(sql, args)
            return cur.rowcount

        count = await self._call(op)
        for event_topic in list(self._events):
            self._notify(event_topic)
        return count

    def _make_room(self, conn: sqlite3.Connection, need: int) -> None:
        """Acked rows (retained traces, delivery records) are kept only while there is
        room: evict the oldest first, down to 5 % under the budget. Unacked data is never
        evicted; if it alone fills the budget, publishing fails with QueueFull."""
        target = self.budget_bytes - need - self.budget_bytes // 20
        self._refresh_usage(conn)
        while self._used_bytes > target:
            cur = conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE state = 1"
                " ORDER BY done_at LIMIT 2000)"
            )
            self._refresh_usage(conn)
            if cur.rowcount == 0:
                return
            metrics.QUEUE_EVICTED.inc(cur.rowcount)

    async def prune(self, now: float | None = None) -> int:
        """Delete acked messages older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute("DELETE FROM messages WHERE state = 1 AND done_at < ?", (cutoff,))
            self._refresh_usage(conn)
            return cur.rowcount

        return await self._call(op)

    async def wait(self, topic: str, timeout: float) -> None:
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        event.clear()

    def _notify(self, topic: str) -> None:
        event = self._events.get(topic)
        if event is not None:
            event.set()

    async def stats(self) -> QueueStats:
        def op(conn: sqlite3.Connection) -> QueueStats:
            pending: dict[str, int] = {}
            dead: dict[str, int] = {}
            for topic, state, count in conn.execute(
                "SELECT topic, state, COUNT(*) FROM messages WHERE state != 1 GROUP BY topic, state"
            ):
                (pending if state == READY else dead)[topic] = count
            self._refresh_usage(conn)
            return QueueStats(pending, dead, self._used_bytes, self.budget_bytes)

        return await self._call(op)

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    async def trace_status(self, key: str, topic_prefix: str) -> list[DeliveryRecord]:
        """Every message of trace ``key`` in topics under ``topic_prefix``, and its
        ``traces`` message while it waits to be processed (a processed one is not looked
        up by key: see the index note in the schema)."""

        def op(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            columns = "id, topic, state, attempts, error, created_at, done_at"
            deliveries = conn.execute(
                f"SELECT {columns} FROM messages WHERE key = ? AND topic != 'traces'"
                " AND substr(topic, 1, ?) = ?",
                (key, len(topic_prefix), topic_prefix),
            ).fetchall()
            backlog = conn.execute(  # not yet processed: walks the (small) backlog
                f"SELECT {columns} FROM messages WHERE topic = ? AND state = 0 AND key = ?",
                (TRACES_TOPIC, key),
            ).fetchall()
            return [_record(*row) for row in sorted(deliveries + backlog)]

        return await self._call(op)

    async def list_retained(
        self, since: float, until: float, after_id: int = 0, limit: int = 500
    ) -> list[Message]:
        """Processed ``traces`` messages created in [since, until), by id after ``after_id``."""

        def op(conn: sqlite3.Connection) -> list[Message]:
            # ids grow with time: start at the first one of ``since`` instead of walking
            # every retained trace older than it (a week of them, for a tail of a minute)
            start = max(after_id, _first_id_at(conn, since) - 1)
            rows = conn.execute(
                "SELECT id, key, payload, attempts, created_at FROM messages"
                " WHERE topic = ? AND state = 1 AND id > ? AND created_at >= ?"
                " AND created_at < ? ORDER BY id LIMIT ?",
                (TRACES_TOPIC, start, since, until, limit),
            ).fetchall()
            return [Message(r[0], TRACES_TOPIC, bytes(r[2]), r[3], r[4], r[1]) for r in rows]

        return await self._call(op)

    async def purge_dead(self, topic: str, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters of ``topic`` (only ``ids`` if given); returns how many."""

        def op(conn: sqlite3.Connection) -> int:
            sql = "DELETE FROM messages WHERE state = 2 AND topic = ?"
            args: list[Any] = [topic]
            if ids is not None:
                sql += f" AND id IN ({','.join('?' * len(ids)) or 'NULL'})"
                args.extend(ids)
            return conn.execute(sql, args).rowcount

        return await self._call(op)

    async def get_retained(self, key: str) -> bytes | None:
        """The stored payload of a trace by its key (id): the backlog first (an index
        walk), then the retained ones (a scan: for tools and tests, not for hot paths)."""

        def op(conn: sqlite3.Connection) -> bytes | None:
            for state in ("state = 0", "state != 0"):
                row = conn.execute(
                    f"SELECT payload FROM messages WHERE topic = ? AND {state} AND key = ?"
                    " ORDER BY id DESC LIMIT 1",
                    (TRACES_TOPIC, key),
                ).fetchone()
                if row is not None:
                    return bytes(row[0])
            return None

        return await self._call(op)


def _first_id_at(conn: sqlite3.Connection, when: float) -> int:
    """About the first row id created at or after ``when``: a binary search over row ids
    (one rowid seek a step), as ids are handed out in time order by the one writer."""
    low, high = conn.execute("SELECT min(id), max(id) FROM messages").fetchone()
    if low is None:
        return 0
    while low < high:
        mid = (low + high) // 2
        row = conn.execute(
            "SELECT id, created_at FROM messages WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        ).fetchone()
        if row[1] < when:
            low = row[0] + 1
        else:
            high = mid
    return int(low)


def _record(
    id_: int,
    topic: str,
    state: int,
    attempts: int,
    error: str | None,
    created_at: float,
    done_at: float | None,
) -> DeliveryRecord:
    """A row as a status: ``traces`` rows are queued/processed; deliveries are pending
    (not yet tried), retrying (tried, failed, will retry), delivered or dead."""
    if topic == TRACES_TOPIC:
        name = "processed" if state == ACKED else "queued"
    elif state == ACKED:
        name = "delivered"
    elif state == DEAD:
        name = "dead"
    else:
        name = "retrying" if error else "pending"
    return DeliveryRecord(id_, topic, name, attempts, error, created_at, done_at)
