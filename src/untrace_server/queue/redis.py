"""The fleet queue on Redis Streams: one stream per topic, one consumer group shared by
every worker, so API pods and workers scale out independently.

Mapping of the Queue protocol:
- publish → XADD in one MULTI/EXEC (fields k = key, p = payload, c = created, s = attempts
  spent before a replay);
- lease → XAUTOCLAIM entries idle longer than the visibility timeout (a crashed
  consumer's work), then XREADGROUP new ones; attempts = the group's delivery counter;
- ack → XACK (+ XDEL, except on ``traces``, which is retained and trimmed by MINID);
- lease and nack(delay) → XCLAIM … TIME JUSTID sets when the entry becomes claimable;
- dead → XADD to ``<prefix>:dead:<topic>`` with the error and the original id (the
  dead letter's id), then XACK + XDEL;
- replay_dead → XADD back to the topic, XDEL from the dead stream;
- purge_dead → XDEL from the dead stream (DEL of the whole stream without ids).
Status (``trace_status``, what ``GET /api/v1/traces/{id}`` shows): acked deliveries are
XDEL'd, so each trace has a small hash ``<prefix>:st:<trace id>`` with one field per
topic — state, attempts, last error, times (and, for ``traces``, the stream id, which
``get_retained`` reads the payload by) — written right after the queue operation it
describes and expiring with the retention. ``list_retained`` (backfill) walks the
retained ``traces`` stream by time (stream ids are milliseconds), skipping entries the
workers have not processed yet.
Durability is Redis's: run it with AOF (``appendonly yes``, ``appendfsync everysec`` or
``always``) and ``maxmemory-policy noeviction``; a write Redis refuses for memory becomes
QueueFull (503 + Retry-After), never a silent drop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from untrace_server.errors import QueueFull, QueueUnavailable
from untrace_server.queue._redis_lua import LEASE_LUA
from untrace_server.queue.base import (
    TRACES_TOPIC,
    DeadLetter,
    DeliveryRecord,
    Message,
    QueueStats,
)

__all__ = ["RedisQueue"]

log = logging.getLogger("untrace.queue")

GROUP = "untrace"
# Every lease and nack sets an entry's last-delivery time so that it has been idle for
# this long exactly when it should become visible again; XAUTOCLAIM uses it as min-idle.
_HORIZON_MS = 86_400_000
_SEP = "\x00"
_json = msgspec.json.Encoder()
_unjson = msgspec.json.Decoder()
# a status record: [state, attempts, last error, created_at, done_at, stream id]
_Record = list[Any]


def _split(message_id: Any) -> tuple[str, str]:
    topic, _, sid = str(message_id).partition(_SEP)
    return topic, sid


def _group_by_topic(ids: Sequence[Any]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for message_id in ids:
        topic, sid = _split(message_id)
        grouped.setdefault(topic, []).append(sid)
    return grouped


class RedisQueue:
    supports_status = True  # nack keeps the last error; trace_status answers

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "untrace",
        consumer: str | None = None,
        retention_s: float = 7 * 86400,
        budget_bytes: int = 1 << 30,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.consumer = consumer or f"c-{id(self):x}"
        self.retention_s = retention_s
        self.budget_bytes = budget_bytes
        self._redis: Any = None
        self._groups: set[str] = set()
        # message id → (trace id, attempts, created) of what this node leased: the
        # status written at ack/nack/dead needs them, and the ids alone do not say
        self._leased: dict[str, tuple[str, int, float]] = {}
        self._lease_script: Any = None
        self._cursors: dict[str, str] = {}  # topic → where the pending-list walk goes on

    def _stream(self, topic: str) -> str:
        return f"{self.prefix}:s:{topic}"

    def _dead(self, topic: str) -> str:
        return f"{self.prefix}:dead:{topic}"

    def _status(self, key: str) -> str:
        return f"{self.prefix}:st:{key}"

    def _record(self, pipe: Any, records: Sequence[tuple[str, str, _Record]]) -> None:
        """Add the writes of (trace id, topic, record) status records to ``pipe``; they
        go with the trace's retained ``traces`` entry (``prune``)."""
        for key, topic, record in records:
            pipe.hset(self._status(key), topic, _json.encode(record))

    async def _settled(
        self, ids: Sequence[Any], state: str, error: str | None, *, done: bool
    ) -> list[tuple[str, str, _Record]]:
        """The new status records of messages (leased by this node; others are looked
        up in their stream)."""
        now = time.time()
        records: list[tuple[str, str, _Record]] = []
        for message_id in ids:
            topic, sid = _split(message_id)
            known = self._leased.pop(str(message_id), None)
            if known is None:
                entry = await self.redis.xrange(self._stream(topic), sid, sid)
                if not entry:
                    continue
                fields = entry[0][1]
                known = (fields[b"k"].decode(), 1, float(fields[b"c"]))
            key, attempts, created = known
            name = state
            if topic == TRACES_TOPIC:
                name = "processed" if state == "delivered" else "queued"
            records.append(
                (key, topic, [name, attempts, error, created, now if done else None, sid])
            )
        return records

    @property
    def redis(self) -> Any:  # redis-py's response types are too loose to check usefully
        if self._redis is None:
            raise QueueUnavailable("queue is not running")
        return self._redis

    async def start(self) -> None:
        if self._redis is None:
            self._redis = aioredis.from_url(self.url, decode_responses=False)
            await self.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _ensure_group(self, topic: str) -> None:
        if topic in self._groups:
            return
        try:
            await self.redis.xgroup_create(self._stream(topic), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.sadd(f"{self.prefix}:topics", topic)
        self._groups.add(topic)

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Any]:
        if not items:
            return []
        try:
            await self._ensure_group(topic)
            now = str(time.time()).encode()
            created = float(now)
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, payload in items:
                    pipe.xadd(self._stream(topic), {"k": key, "p": payload, "c": now, "s": 0})
                if topic != TRACES_TOPIC:  # a delivery's status needs no stream id
                    pending = ["pending", 0, None, created, None, None]
                    self._record(pipe, [(key, topic, pending) for key, _ in items])
                sids = (await pipe.execute())[: len(items)]
            if topic == TRACES_TOPIC:  # get_retained reads the payload by the stream id
                queued = [
                    (key, topic, ["queued", 0, None, created, None, sid.decode()])
                    for (key, _), sid in zip(items, sids, strict=True)
                ]
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        self._record(pipe, queued)
                        await pipe.execute()
                except (RedisError, OSError) as exc:  # the traces are durable: say so
                    log.warning("trace status not recorded (%d traces): %s", len(items), exc)
        except ResponseError as exc:
            if "OOM" in str(exc):
                raise QueueFull(f"Redis refused the write: {exc}") from None
            raise QueueUnavailable(f"Redis error: {exc}") from None
        except (RedisConnectionError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable: {exc}") from None
        return [f"{topic}{_SEP}{sid.decode()}" for sid in sids]

    async def lease(self, topic: str, max_items: int, visibility_s: float) -> list[Message]:
        await self._ensure_group(topic)
        stream = self._stream(topic)
        if self._lease_script is None:
            self._lease_script = self.redis.register_script(LEASE_LUA)
        hide_at_ms = int((time.time() + visibility_s) * 1000) - _HORIZON_MS
        cursor = self._cursors.get(topic, "0-0")
        next_cursor, raw = await self._lease_script(
            keys=[stream], args=[GROUP, self.consumer, max_items, _HORIZON_MS, hide_at_ms, cursor]
        )
        self._cursors[topic] = next_cursor.decode()
        entries: list[tuple[bytes, dict[bytes, bytes]]] = [
            (sid, dict(zip(flat[::2], flat[1::2], strict=True))) for sid, flat in raw
        ]
        if not entries:
            return []
        sids = [e[0] for e in entries]
        counters = await self._delivery_counts(stream, sids)
        messages = [
            Message(
                id=f"{topic}{_SEP}{sid.decode()}",
                topic=topic,
                payload=fields[b"p"],
                attempts=counters.get(sid, 1) + int(fields.get(b"s", b"0")),
                created_at=float(fields[b"c"]),
                key=fields[b"k"].decode(),
            )
            for sid, fields in sorted(entries, key=lambda e: _order(e[0]))
        ]
        for m in messages:
            self._leased[str(m.id)] = (m.key, m.attempts, m.created_at)
        return messages

    async def _hide_until(self, topic: str, sids: Sequence[bytes | str], when: float) -> None:
        """Make pending entries claimable again at ``when`` (Unix s): XAUTOCLAIM takes
        entries idle for ``_HORIZON_MS``, so set their last delivery to when - horizon."""
        at_ms = int(when * 1000) - _HORIZON_MS
        await self.redis.xclaim(
            self._stream(topic), GROUP, self.consumer, 0, list(sids), time=at_ms, justid=True
        )

    async def _delivery_counts(self, stream: str, sids: list[bytes]) -> dict[bytes, int]:
        first, last = min(sids, key=_order), max(sids, key=_order)
        pending = await self.redis.xpending_range(stream, GROUP, first, last, len(sids) * 2)
        return {p["message_id"]: int(p["times_delivered"]) for p in pending}

    async def ack(self, ids: Sequence[Any]) -> None:
        records = await self._settled(ids, "delivered", None, done=True)
        async with self.redis.pipeline(transaction=True) as pipe:
            for topic, sids in _group_by_topic(ids).items():
                pipe.xack(self._stream(topic), GROUP, *sids)
                if topic != TRACES_TOPIC:
                    pipe.xdel(self._stream(topic), *sids)
            self._record(pipe, records)
            await pipe.execute()

    async def nack(self, ids: Sequence[Any], delay_s: float, error: str | None = None) -> None:
        error = None if error is None else error[:4000]
        records = await self._settled(ids, "retrying", error, done=False)
        for topic, sids in _group_by_topic(ids).items():
            await self._hide_until(topic, sids, time.time() + min(delay_s, _HORIZON_MS / 1000))
        if records:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._record(pipe, records)
                await pipe.execute()

    async def dead(self, ids: Sequence[Any], error: str) -> None:
        records = await self._settled(ids, "dead", error[:4000], done=True)
        now = str(time.time()).encode()
        for topic, sids in _group_by_topic(ids).items():
            stream = self._stream(topic)
            counts = await self._delivery_counts(stream, [s.encode() for s in sids])
            async with self.redis.pipeline(transaction=True) as pipe:
                for sid in sids:
                    entry = await self.redis.xrange(stream, sid, sid)
                    if not entry:
                        continue
                    fields = entry[0][1]
                    attempts = counts.get(sid.encode(), 1) + int(fields.get(b"s", b"0"))
                    pipe.xadd(self._dead(topic), {**fields, b"e": error[:4000].encode(),
                                                  b"a": attempts, b"d": now,
                                                  b"o": sid.encode()})  # fmt: skip
                pipe.xack(stream, GROUP, *sids)
                pipe.xdel(stream, *sids)
                self._record(pipe, [r for r in records if r[1] == topic])
                await pipe.execute()

    async def _topics(self) -> list[str]:
        return sorted(t.decode() for t in await self.redis.smembers(f"{self.prefix}:topics"))

    async def list_dead(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for name in [topic] if topic is not None else await self._topics():
            for _, f in await self.redis.xrange(self._dead(name), count=limit - len(letters)):
                letters.append(DeadLetter(
                    id=f"{name}{_SEP}{f[b'o'].decode()}", topic=name, key=f[b"k"].decode(),
                    payload=f[b"p"], attempts=int(f[b"a"]), error=f[b"e"].decode(),
                    created_at=float(f[b"c"]), dead_at=float(f[b"d"]),
                ))  # fmt: skip
            if len(letters) >= limit:
                break
        return letters

    async def replay_dead(self, topic: str | None = None, ids: Sequence[Any] | None = None) -> int:
        wanted = {str(i) for i in ids} if ids is not None else None
        count = 0
        for name in [topic] if topic is not None else await self._topics():
            for sid, fields in await self.redis.xrange(self._dead(name)):
                if wanted is not None and f"{name}{_SEP}{fields[b'o'].decode()}" not in wanted:
                    continue
                keep = {k: v for k, v in fields.items() if k in (b"k", b"p", b"c")}
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(self._stream(name), {**keep, b"s": 0})
                    pipe.xdel(self._dead(name), sid)
                    new_sid, _ = await pipe.execute()
                record = ["pending", 0, None, float(fields[b"c"]), None, new_sid.decode()]
                async with self.redis.pipeline(transaction=False) as pipe:
                    self._record(pipe, [(fields[b"k"].decode(), name, record)])
                    await pipe.execute()
                count += 1
        return count

    async def purge_dead(self, topic: str, ids: Sequence[Any] | None = None) -> int:
        """Delete dead letters of ``topic`` (only ``ids`` — as ``list_dead`` gives them —
        if given); returns how many."""
        stream = self._dead(topic)
        if ids is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(stream)
                pipe.delete(stream)
                count, _ = await pipe.execute()
            return int(count)
        wanted = {_split(i)[1] for i in ids if _split(i)[0] == topic}
        gone = [
            (sid, f[b"k"].decode())
            for sid, f in await self.redis.xrange(stream)
            if f[b"o"].decode() in wanted
        ]
        if not gone:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xdel(stream, *(sid for sid, _ in gone))
            for _, key in gone:
                pipe.hdel(self._status(key), topic)
            count, *_ = await pipe.execute()
        return int(count)

    async def trace_status(self, key: str, topic_prefix: str) -> list[DeliveryRecord]:
        """The status records of trace ``key``: its ``traces`` record and those of the
        topics under ``topic_prefix``."""
        raw = await self.redis.hgetall(self._status(key))
        records = []
        for field, value in raw.items():
            topic = field.decode()
            if topic != TRACES_TOPIC and not topic.startswith(topic_prefix):
                continue
            state, attempts, error, created, done, _sid = _unjson.decode(value)
            records.append(DeliveryRecord(0, topic, state, attempts, error, created, done))
        return sorted(records, key=lambda r: (r.topic != TRACES_TOPIC, r.created_at, r.topic))

    async def get_retained(self, key: str) -> bytes | None:
        """The payload of trace ``key`` while its ``traces`` entry is retained."""
        value = await self.redis.hget(self._status(key), TRACES_TOPIC)
        if value is None:
            return None
        sid = _unjson.decode(value)[5]
        entry = await self.redis.xrange(self._stream(TRACES_TOPIC), sid, sid)
        return bytes(entry[0][1][b"p"]) if entry else None

    async def list_retained(
        self, since: float, until: float, after_id: Any = 0, limit: int = 500
    ) -> list[Message]:
        """Processed ``traces`` entries added in [since, until), after ``after_id``;
        entries the workers have not processed yet are skipped (not pending, not past
        the group's last delivered id)."""
        stream = self._stream(TRACES_TOPIC)
        start = f"({_split(after_id)[1]}" if after_id else str(int(since * 1000))
        end = f"({int(until * 1000)}"
        entries = await self.redis.xrange(stream, start, end, count=limit)
        if not entries:
            return []
        unprocessed: set[bytes] = set()
        for group in await self.redis.xinfo_groups(stream):
            if group["name"] == GROUP.encode():
                last = group["last-delivered-id"]
                unprocessed = {sid for sid, _ in entries if _order(sid) > _order(last)}
        sids = [sid for sid, _ in entries]
        pending = await self.redis.xpending_range(
            stream, GROUP, min(sids, key=_order), max(sids, key=_order), len(sids)
        )
        unprocessed.update(p["message_id"] for p in pending)
        messages = [
            Message(
                id=f"{TRACES_TOPIC}{_SEP}{sid.decode()}",
                topic=TRACES_TOPIC,
                payload=fields[b"p"],
                attempts=int(fields.get(b"s", b"0")),
                created_at=float(fields[b"c"]),
                key=fields[b"k"].decode(),
            )
            for sid, fields in entries
            if sid not in unprocessed and since <= float(fields[b"c"]) < until
        ]
        if not messages and len(entries) == limit:  # a page of unprocessed ones: go on
            return await self.list_retained(since, until, f"x{_SEP}{sids[-1].decode()}", limit)
        return messages

    async def prune(self, now: float | None = None) -> int:
        """Trim retained ``traces`` entries older than the retention, and the status
        hashes that belong to them (a hash whose ``traces`` record names a newer entry
        — the same id sent again — stays)."""
        cutoff_ms = int(((time.time() if now is None else now) - self.retention_s) * 1000)
        stream = self._stream(TRACES_TOPIC)
        start = "-"
        while entries := await self.redis.xrange(stream, start, str(cutoff_ms - 1), count=1000):
            start = "(" + entries[-1][0].decode()
            keys = [fields[b"k"].decode() for _, fields in entries]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(self._status(key), TRACES_TOPIC)
                current = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for (sid, _), key, value in zip(entries, keys, current, strict=True):
                    if value is None or _unjson.decode(value)[5] == sid.decode():
                        pipe.delete(self._status(key))
                await pipe.execute()
        return int(await self.redis.xtrim(stream, minid=cutoff_ms))

    async def wait(self, topic: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.05))

    async def stats(self) -> QueueStats:
        pending: dict[str, int] = {}
        dead: dict[str, int] = {}
        for topic in await self._topics():
            for group in await self.redis.xinfo_groups(self._stream(topic)):
                if group["name"] == GROUP.encode():
                    pending[topic] = int(group["pending"]) + int(group.get("lag") or 0)
            dead_count = await self.redis.xlen(self._dead(topic))
            if dead_count:
                dead[topic] = dead_count
        memory = await self.redis.info("memory")
        return QueueStats(pending, dead, int(memory["used_memory"]), self.budget_bytes)

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"Redis unreachable at {self.url}: {exc}") from None


def _order(sid: bytes) -> tuple[int, int]:
    ms, _, seq = sid.partition(b"-")
    return int(ms), int(seq or 0)
