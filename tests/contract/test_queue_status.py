"""What the status API and backfill read from a queue, on every backend that keeps it:
per-trace delivery records through publish → lease → nack/ack/dead → replay → purge,
the retained payload by trace id, and retained traces listed by time, processed only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require_service

from untrace_server.errors import QueueUnavailable
from untrace_server.queue.base import TRACES_TOPIC, delivery_topic
from untrace_server.queue.memory import MemoryQueue
from untrace_server.queue.redis import RedisQueue
from untrace_server.queue.sqlite import SqliteQueue

REDIS_URL = "redis://127.0.0.1:6379/0"
PREFIX = "deliver.acme/"


@pytest.fixture(params=["sqlite", "memory", "redis"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    q: Any
    if request.param == "sqlite":
        q = SqliteQueue(tmp_path / "q.db")
    elif request.param == "memory":
        q = MemoryQueue()
    else:
        q = RedisQueue(REDIS_URL, prefix=f"untrace-status-{uuid.uuid4().hex[:8]}")
    try:
        await q.start()
    except QueueUnavailable:
        require_service("Redis at 127.0.0.1:6379")
    yield q
    if isinstance(q, RedisQueue):
        async for key in q.redis.scan_iter(match=f"{q.prefix}:*"):
            await q.redis.delete(key)
    await q.close()


def states(records: list[Any]) -> dict[str, tuple[str, int, str | None]]:
    return {r.topic: (r.state, r.attempts, r.error) for r in records}


async def test_a_delivery_record_follows_its_message(queue: Any) -> None:
    topic = delivery_topic("acme", "hook")
    assert queue.supports_status
    await queue.publish(topic, [("t-1", b"x")])
    assert states(await queue.trace_status("t-1", PREFIX)) == {topic: ("pending", 0, None)}

    [m] = await queue.lease(topic, 10, 30)
    await queue.nack([m.id], 0, error="HTTP 503")
    assert states(await queue.trace_status("t-1", PREFIX)) == {topic: ("retrying", 1, "HTTP 503")}

    [m] = await queue.lease(topic, 10, 30)
    await queue.dead([m.id], "HTTP 400: bad")
    [record] = await queue.trace_status("t-1", PREFIX)
    assert (record.state, record.attempts, record.error) == ("dead", 2, "HTTP 400: bad")
    assert record.done_at is not None and record.done_at >= record.created_at

    assert await queue.replay_dead(topic) == 1
    assert states(await queue.trace_status("t-1", PREFIX))[topic][0] == "pending"
    [m] = await queue.lease(topic, 10, 30)
    await queue.ack([m.id])
    [record] = await queue.trace_status("t-1", PREFIX)
    assert (record.state, record.attempts) == ("delivered", 1)
    assert record.done_at is not None

    # other customers' topics and other traces are not part of the answer
    await queue.publish(delivery_topic("globex", "hook"), [("t-1", b"x")])
    await queue.publish(topic, [("t-2", b"y")])
    assert list(states(await queue.trace_status("t-1", PREFIX))) == [topic]
    assert await queue.trace_status("nope", PREFIX) == []


async def test_purged_dead_letters_leave_no_status(queue: Any) -> None:
    topic = delivery_topic("acme", "hook")
    await queue.publish(topic, [("t-1", b"x"), ("t-2", b"y")])
    leased = await queue.lease(topic, 10, 30)
    await queue.dead([m.id for m in leased], "gone")
    [first, _] = await queue.list_dead(topic)
    assert await queue.purge_dead(topic, [first.id]) == 1
    assert await queue.trace_status(first.key, PREFIX) == []
    other = "t-2" if first.key == "t-1" else "t-1"
    assert states(await queue.trace_status(other, PREFIX))[topic][0] == "dead"


async def test_ingest_record_and_retained_payload(queue: Any) -> None:
    await queue.publish(TRACES_TOPIC, [("t-1", b"payload-1")])
    assert states(await queue.trace_status("t-1", PREFIX))[TRACES_TOPIC][0] == "queued"
    assert await queue.get_retained("t-1") == b"payload-1"
    [m] = await queue.lease(TRACES_TOPIC, 10, 30)
    await queue.ack([m.id])
    assert await queue.get_retained("t-1") == b"payload-1"  # retained after processing
    assert await queue.get_retained("nope") is None


async def test_retained_traces_by_time_processed_only(queue: Any) -> None:
    t0 = time.time()
    await queue.publish(TRACES_TOPIC, [(f"t-{i}", f"p{i}".encode()) for i in range(7)])
    processed = await queue.lease(TRACES_TOPIC, 5, 30)
    await queue.ack([m.id for m in processed])  # t-5 and t-6 are still queued
    await queue.lease(TRACES_TOPIC, 1, 30)  # t-5 leased, not acked: not processed either
    t1 = time.time() + 1

    pages, after = [], 0
    while page := await queue.list_retained(t0 - 1, t1, after, 2):
        pages.append([m.key for m in page])
        after = page[-1].id
    assert [k for p in pages for k in p] == [f"t-{i}" for i in range(5)]
    assert all(len(p) <= 2 for p in pages)
    assert (await queue.list_retained(t0 - 1, t1, 0, 10))[0].payload == b"p0"
    assert await queue.list_retained(t1, t1 + 10, 0, 10) == []  # outside the range


async def test_prune_takes_the_status_with_the_retained_trace(queue: Any) -> None:
    topic = delivery_topic("acme", "hook")
    await queue.publish(TRACES_TOPIC, [("t-1", b"p1")])
    [m] = await queue.lease(TRACES_TOPIC, 10, 30)
    await queue.ack([m.id])
    await queue.publish(topic, [("t-1", b"p1")])
    [d] = await queue.lease(topic, 10, 30)
    await queue.ack([d.id])
    await queue.prune(time.time() - queue.retention_s - 3600)  # an hour ago: nothing old
    assert await queue.get_retained("t-1") == b"p1"
    await queue.prune(time.time() + queue.retention_s + 3600)
    assert await queue.get_retained("t-1") is None
    assert await queue.trace_status("t-1", PREFIX) == []
    assert await queue.list_retained(0, time.time() + 10, 0, 10) == []


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_early_eviction_of_retained_traces_is_counted(kind: str, tmp_path: Path) -> None:
    """When the budget forces retained (acked) traces out before their retention ends,
    untrace_queue_evicted_total says so: the replay window is shrinking."""
    from untrace_server.observability.metrics import QUEUE_EVICTED

    q: Any = (
        SqliteQueue(tmp_path / "q.db", budget_bytes=300_000)
        if kind == "sqlite"
        else MemoryQueue(budget_bytes=300_000)
    )
    await q.start()
    try:
        before = QUEUE_EVICTED._value.get()
        for i in range(600):  # 600 KB through a 300 KB budget
            await q.publish(TRACES_TOPIC, [(f"t{i}", b"x" * 1000)])
            [m] = await q.lease(TRACES_TOPIC, 1, 30)
            await q.ack([m.id])
        evicted = QUEUE_EVICTED._value.get() - before
        assert evicted >= 200
        assert await q.get_retained("t0") is None and await q.get_retained("t599") == b"x" * 1000
    finally:
        await q.close()


async def test_retained_traces_from_a_time_skip_the_older_ones(queue: Any) -> None:
    marks = []
    for batch in range(3):
        marks.append(time.time())
        await queue.publish(TRACES_TOPIC, [(f"b{batch}-{i}", b"p") for i in range(50)])
        leased = await queue.lease(TRACES_TOPIC, 100, 30)
        await queue.ack([m.id for m in leased])
        await asyncio.sleep(0.02)
    got = await queue.list_retained(marks[1], time.time() + 1, 0, 500)
    assert [m.key for m in got] == [f"b{b}-{i}" for b in (1, 2) for i in range(50)]
