"""An in-memory Queue with the same semantics as the durable ones, for unit tests and
for embedding. Nothing survives the process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from untrace_server.errors import QueueFull, QueueUnavailable
from untrace_server.observability import metrics
from untrace_server.queue.base import (
    TRACES_TOPIC,
    DeadLetter,
    DeliveryRecord,
    Message,
    MessageId,
    QueueStats,
)

__all__ = ["MemoryQueue"]


@dataclass
class _Row:
    id: int
    topic: str
    key: str
    payload: bytes
    created_at: float
    visible_at: float
    attempts: int = 0
    state: int = 0  # 0 ready, 1 acked, 2 dead
    error: str = ""
    done_at: float = 0.0


class MemoryQueue:
    supports_status = True  # acked deliveries are kept, payload emptied (see SqliteQueue)

    def __init__(self, *, budget_bytes: int = 1 << 30, retention_s: float = 7 * 86400) -> None:
        self.budget_bytes = budget_bytes
        self.retention_s = retention_s
        self._rows: dict[MessageId, _Row] = {}
        self._ids = itertools.count(1)
        self._events: dict[str, asyncio.Event] = {}
        self._used = 0
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def close(self) -> None:
        self._running = False

    def _check(self) -> None:
        if not self._running:
            raise QueueUnavailable("queue is not running")

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[MessageId]:
        self._check()
        size = sum(len(p) + len(k) + 64 for k, p in items)
        if self._used + size > self.budget_bytes:
            self._make_room(size)
        if self._used + size > self.budget_bytes:
            raise QueueFull(f"queue budget of {self.budget_bytes} bytes is used up")
        now = time.time()
        ids: list[MessageId] = []
        for key, payload in items:
            row = _Row(next(self._ids), topic, key, payload, now, now)
            self._rows[row.id] = row
            ids.append(row.id)
        self._used += size
        if topic in self._events:
            self._events[topic].set()
        return ids

    async def lease(self, topic: str, max_items: int, visibility_s: float) -> list[Message]:
        self._check()
        now = time.time()
        out: list[Message] = []
        for row in self._rows.values():
            if len(out) >= max_items:
                break
            if row.topic == topic and row.state == 0 and row.visible_at <= now:
                row.visible_at = now + visibility_s
                row.attempts += 1
                out.append(
                    Message(row.id, topic, row.payload, row.attempts, row.created_at, row.key)
                )
        return out

    async def ack(self, ids: Sequence[MessageId]) -> None:
        self._check()
        now = time.time()
        for i in ids:
            row = self._rows.get(i)
            if row is None:
                continue
            if row.state != 0:
                continue
            row.state, row.done_at = 1, now
            if row.topic != TRACES_TOPIC:
                self._used -= len(row.payload)
                row.payload = b""

    async def nack(
        self, ids: Sequence[MessageId], delay_s: float, error: str | None = None
    ) -> None:
        self._check()
        for i in ids:
            row = self._rows.get(i)
            if row is not None and row.state == 0:
                row.visible_at = time.time() + delay_s
                if error is not None:
                    row.error = error

    async def dead(self, ids: Sequence[MessageId], error: str) -> None:
        self._check()
        for i in ids:
            row = self._rows.get(i)
            if row is not None:
                row.state, row.error, row.done_at = 2, error, time.time()

    async def list_dead(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        rows = [
            r for r in self._rows.values() if r.state == 2 and (topic is None or r.topic == topic)
        ]
        return [
            DeadLetter(
                r.id, r.topic, r.key, r.payload, r.attempts, r.error, r.created_at, r.done_at
            )
            for r in rows[:limit]
        ]

    async def replay_dead(
        self, topic: str | None = None, ids: Sequence[MessageId] | None = None
    ) -> int:
        count = 0
        wanted = set(ids) if ids is not None else None
        for row in self._rows.values():
            if row.state != 2 or (topic is not None and row.topic != topic):
                continue
            if wanted is not None and row.id not in wanted:
                continue
            row.state, row.attempts, row.error, row.visible_at = 0, 0, "", time.time()
            count += 1
            if row.topic in self._events:
                self._events[row.topic].set()
        return count

    def _make_room(self, need: int) -> None:
        """Acked rows are retained only while there is room: evict the oldest first."""
        for row in sorted(
            (r for r in self._rows.values() if r.state == 1), key=lambda r: r.done_at
        ):
            if self._used + need <= self.budget_bytes:
                return
            del self._rows[row.id]
            self._used -= len(row.payload) + len(row.key) + 64
            metrics.QUEUE_EVICTED.inc()

    async def prune(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - self.retention_s
        old = [i for i, r in self._rows.items() if r.state == 1 and r.done_at < cutoff]
        for i in old:
            row = self._rows.pop(i)
            self._used -= len(row.payload) + len(row.key) + 64
        return len(old)

    async def wait(self, topic: str, timeout: float) -> None:
        event = self._events.setdefault(topic, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        event.clear()

    async def stats(self) -> QueueStats:
        pending: dict[str, int] = {}
        dead: dict[str, int] = {}
        for r in self._rows.values():
            if r.state == 0:
                pending[r.topic] = pending.get(r.topic, 0) + 1
            elif r.state == 2:
                dead[r.topic] = dead.get(r.topic, 0) + 1
        return QueueStats(pending, dead, self._used, self.budget_bytes)

    async def ping(self) -> None:
        self._check()

    async def trace_status(self, key: str, topic_prefix: str) -> list[DeliveryRecord]:
        out = []
        for r in self._rows.values():
            if r.key != key or not (r.topic == TRACES_TOPIC or r.topic.startswith(topic_prefix)):
                continue
            if r.topic == TRACES_TOPIC:
                state = "processed" if r.state == 1 else "queued"
            else:
                state = {1: "delivered", 2: "dead"}.get(
                    r.state, "retrying" if r.error else "pending"
                )
            out.append(
                DeliveryRecord(
                    r.id, r.topic, state, r.attempts, r.error or None, r.created_at, r.done_at
                )
            )
        return out

    async def list_retained(
        self, since: float, until: float, after_id: int = 0, limit: int = 500
    ) -> list[Message]:
        rows = [
            r
            for r in self._rows.values()
            if r.topic == TRACES_TOPIC
            and r.state == 1
            and r.id > after_id
            and since <= r.created_at < until
        ]
        return [
            Message(r.id, r.topic, r.payload, r.attempts, r.created_at, r.key)
            for r in sorted(rows, key=lambda r: r.id)[:limit]
        ]

    async def purge_dead(self, topic: str, ids: Sequence[int] | None = None) -> int:
        wanted = set(ids) if ids is not None else None
        gone = [
            i
            for i, r in self._rows.items()
            if r.state == 2 and r.topic == topic and (wanted is None or i in wanted)
        ]
        for i in gone:
            row = self._rows.pop(i)
            self._used -= len(row.payload) + len(row.key) + 64
        return len(gone)

    async def get_retained(self, key: str) -> bytes | None:
        for row in reversed(list(self._rows.values())):
            if row.topic == TRACES_TOPIC and row.key == key:
                return row.payload
        return None
