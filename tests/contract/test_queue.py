"""One contract suite for every Queue backend."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tests.conftest import require_service

from untrace_server.errors import PayloadTooLarge, QueueFull, QueueUnavailable
from untrace_server.observability import metrics
from untrace_server.queue.base import TRACES_TOPIC, Queue
from untrace_server.queue.memory import MemoryQueue
from untrace_server.queue.nats import NatsQueue
from untrace_server.queue.redis import RedisQueue
from untrace_server.queue.sqlite import SqliteQueue

BACKENDS = ["sqlite", "memory", "redis", "nats"]
# Redis enforces its own maxmemory (OOM → QueueFull); NATS's budget is each stream's
# max_bytes, which the queue sets, so the budget tests hold for it too
LOCAL_BUDGET = ["sqlite", "memory", "nats"]
# acked traces looked up by trace id (get_retained) and pruned by prune(); Redis's are
# covered in test_queue_status.py; NATS keeps them in its traces stream without a key
# index, and JetStream ages them out (max_age: test_nats_retains_acked_traces_until_max_age)
RETAINED_BY_KEY = ["sqlite", "memory"]
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
SERVICES = {"redis": "Redis at 127.0.0.1:6379", "nats": "NATS at 127.0.0.1:4222"}


def make(kind: str, tmp_path: Path, **kw: float) -> Queue:
    if kind == "sqlite":
        return SqliteQueue(tmp_path / "q.db", **kw)  # type: ignore[arg-type]
    if kind == "redis":
        return RedisQueue(REDIS_URL, prefix=f"untrace-test-{uuid.uuid4().hex[:8]}", **kw)  # type: ignore[arg-type]
    if kind == "nats":
        return NatsQueue(NATS_URL, stream=f"untrace-test-{uuid.uuid4().hex[:8]}", **kw)  # type: ignore[arg-type]
    return MemoryQueue(**kw)  # type: ignore[arg-type]


async def _cleanup(q: Queue) -> None:
    if isinstance(q, RedisQueue) and q._redis is not None:
        async for key in q.redis.scan_iter(match=f"{q.prefix}:*"):
            await q.redis.delete(key)
    if isinstance(q, NatsQueue) and q._nc is not None:
        for stream in q.streams:
            await q.jsm.delete_stream(stream)


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Queue]]]:
    """Build and start a queue of a kind (skipped, or failed under CI, when its service
    is down); each is cleaned up and closed afterwards."""
    queues: list[Queue] = []

    async def factory(kind: str, **kw: float) -> Queue:
        (tmp_path / kind).mkdir(exist_ok=True)
        q = make(kind, tmp_path / kind, **kw)
        try:
            await q.start()
        except QueueUnavailable:
            require_service(SERVICES[kind])
        queues.append(q)
        return q

    yield factory
    for q in queues:
        await _cleanup(q)
        await q.close()


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, made: Callable[..., Awaitable[Queue]]) -> Queue:
    return await made(request.param)


async def test_publish_lease_ack_in_order(queue: Queue) -> None:
    ids = await queue.publish("deliver.c/d", [(f"k{i}", f"p{i}".encode()) for i in range(5)])
    assert len(ids) == 5 and ids == sorted(ids)
    got = await queue.lease("deliver.c/d", 3, 30)
    assert [m.key for m in got] == ["k0", "k1", "k2"]
    assert [m.payload for m in got] == [b"p0", b"p1", b"p2"]
    assert all(m.attempts == 1 for m in got)
    # leased messages are invisible to others
    rest = await queue.lease("deliver.c/d", 10, 30)
    assert [m.key for m in rest] == ["k3", "k4"]
    await queue.ack([m.id for m in got + rest])
    assert await queue.lease("deliver.c/d", 10, 30) == []
    stats = await queue.stats()
    assert stats.pending.get("deliver.c/d", 0) == 0


async def test_topics_are_separate(queue: Queue) -> None:
    await queue.publish("a", [("x", b"1")])
    await queue.publish("b", [("y", b"2")])
    assert [m.key for m in await queue.lease("b", 10, 30)] == ["y"]
    assert [m.key for m in await queue.lease("a", 10, 30)] == ["x"]


async def test_lease_expires_and_message_comes_back(queue: Queue) -> None:
    await queue.publish("t", [("k", b"v")])
    first = await queue.lease("t", 1, 0.2)
    assert len(first) == 1
    assert await queue.lease("t", 1, 0.2) == []
    await asyncio.sleep(0.3)
    again = await queue.lease("t", 1, 30)
    assert [m.key for m in again] == ["k"] and again[0].attempts == 2


async def test_every_message_of_an_expired_lease_comes_back(queue: Queue) -> None:
    await queue.publish("t", [(f"k{i}", b"v") for i in range(5)])
    assert len(await queue.lease("t", 5, 0.2)) == 5
    assert await queue.lease("t", 5, 30) == []
    await asyncio.sleep(0.3)
    again = await queue.lease("t", 10, 30)
    assert sorted(m.key for m in again) == [f"k{i}" for i in range(5)]
    assert all(m.attempts == 2 for m in again)


async def test_an_expired_lease_behind_many_live_ones_comes_back(queue: Queue) -> None:
    """A message whose lease ran out is found even when hundreds of messages ahead of it
    are leased (Redis's XAUTOCLAIM looks at only COUNT x 10 pending entries a call: the
    walk must go on where it stopped)."""
    await queue.publish("t", [(f"live-{i}", b"v") for i in range(300)])
    assert len(await queue.lease("t", 300, 60)) == 300  # hidden for a minute
    await queue.publish("t", [("expired", b"v")])
    assert [m.key for m in await queue.lease("t", 1, 0.2)] == ["expired"]
    await asyncio.sleep(0.3)
    found: list[str] = []
    for _ in range(10):  # a few leases at most, each cheap
        found += [m.key for m in await queue.lease("t", 1, 30)]
        if found:
            break
    assert found == ["expired"]


async def test_nack_delays_redelivery(queue: Queue) -> None:
    await queue.publish("t", [("k", b"v")])
    (m,) = await queue.lease("t", 1, 30)
    await queue.nack([m.id], 0.3)
    assert await queue.lease("t", 1, 30) == []
    await asyncio.sleep(0.35)
    assert [x.key for x in await queue.lease("t", 1, 30)] == ["k"]


async def test_dead_letters_list_and_replay(queue: Queue) -> None:
    await queue.publish("deliver.c/d", [("k1", b"1"), ("k2", b"2")])
    msgs = await queue.lease("deliver.c/d", 2, 30)
    await queue.dead([msgs[0].id], "permanent: HTTP 400")
    await queue.ack([msgs[1].id])
    dead = await queue.list_dead("deliver.c/d")
    assert [(d.key, d.error) for d in dead] == [("k1", "permanent: HTTP 400")]
    assert await queue.list_dead("deliver.other/x") == []
    assert (await queue.stats()).dead == {"deliver.c/d": 1}
    assert await queue.replay_dead("deliver.c/d") == 1
    again = await queue.lease("deliver.c/d", 5, 30)
    assert [m.key for m in again] == ["k1"] and again[0].attempts == 1
    assert await queue.list_dead() == []


async def test_any_topic_name_and_key_round_trip(queue: Queue) -> None:
    # NATS maps topics to subject tokens and keys/errors to headers: dots, slashes,
    # spaces, line breaks, '=' and '%' must survive
    topic, key, error = "deliver.cüstomer 1/dest.x=2E%2F~", " trace\r\nü %41 ", "a:\nb "
    await queue.publish(topic, [(key, b"v")])
    assert (await queue.stats()).pending == {topic: 1}
    (m,) = await queue.lease(topic, 10, 30)
    assert (m.topic, m.key) == (topic, key)
    await queue.dead([m.id], error)
    assert (await queue.stats()).dead == {topic: 1}
    assert [(d.topic, d.key, d.error) for d in await queue.list_dead()] == [(topic, key, error)]


async def test_replay_by_id_only_replays_that_one(queue: Queue) -> None:
    await queue.publish("t", [("a", b"1"), ("b", b"2")])
    msgs = await queue.lease("t", 2, 30)
    await queue.dead([m.id for m in msgs], "boom")
    assert await queue.replay_dead(ids=[msgs[1].id]) == 1
    assert [m.key for m in await queue.lease("t", 5, 30)] == ["b"]
    assert [d.key for d in await queue.list_dead()] == ["a"]


async def test_purge_dead_by_id_then_all(queue: Queue) -> None:
    await queue.publish("deliver.c/d", [(k, b"x") for k in ("a", "b", "c")])
    await queue.publish("deliver.c/e", [("z", b"z")])
    msgs = await queue.lease("deliver.c/d", 3, 30)
    await queue.dead([m.id for m in msgs], "boom")
    await queue.dead([m.id for m in await queue.lease("deliver.c/e", 1, 30)], "boom")
    purge = queue.purge_dead  # type: ignore[attr-defined]
    first = (await queue.list_dead("deliver.c/d"))[0]
    assert await purge("deliver.c/d", [first.id]) == 1
    assert [d.key for d in await queue.list_dead("deliver.c/d")] == ["b", "c"]
    assert await purge("deliver.c/d", [first.id]) == 0  # already gone
    assert await purge("deliver.c/d") == 2
    assert await queue.list_dead("deliver.c/d") == []
    assert [d.key for d in await queue.list_dead()] == ["z"]  # other topics untouched
    assert (await queue.stats()).dead == {"deliver.c/e": 1}


@pytest.mark.parametrize("kind", LOCAL_BUDGET)
async def test_budget_full_rejects_whole_publish(
    kind: str, made: Callable[..., Awaitable[Queue]]
) -> None:
    q = await made(kind, budget_bytes=200_000)
    with pytest.raises(QueueFull):
        for i in range(1000):
            await q.publish("t", [(str(i), b"x" * 1000)])
    before = (await q.stats()).pending.get("t", 0)
    with pytest.raises(QueueFull):
        await q.publish("t", [("big", b"x" * 1000)] * 10)
    assert (await q.stats()).pending.get("t", 0) == before


@pytest.mark.parametrize("kind", LOCAL_BUDGET)
async def test_a_batch_larger_than_the_room_left_writes_nothing(
    kind: str, made: Callable[..., Awaitable[Queue]]
) -> None:
    q = await made(kind, budget_bytes=200_000)
    with pytest.raises(QueueFull):  # the first items would fit, the last ones not
        await q.publish("t", [(str(i), b"x" * 1500) for i in range(200)])
    assert (await q.stats()).pending.get("t", 0) == 0
    assert await q.lease("t", 100, 30) == []
    await q.publish("t", [("small", b"x")])  # and the room is there again
    assert [m.key for m in await q.lease("t", 100, 30)] == ["small"]


@pytest.mark.parametrize("kind", LOCAL_BUDGET)
async def test_retained_rows_make_room_for_new_data(
    kind: str, made: Callable[..., Awaitable[Queue]]
) -> None:
    queue = await made(kind, budget_bytes=300_000)
    evicted = metrics.REGISTRY.get_sample_value("untrace_queue_evicted_total") or 0
    for i in range(2000):  # ~2 MB through a 300 KB budget: acked rows are evicted
        await queue.publish(TRACES_TOPIC, [(f"t{i}", b"x" * 1000)])
        (m,) = await queue.lease(TRACES_TOPIC, 1, 30)
        await queue.ack([m.id])
    assert (await queue.stats()).bytes_used <= 300_000
    now_evicted = metrics.REGISTRY.get_sample_value("untrace_queue_evicted_total") or 0
    assert now_evicted - evicted >= 1700  # counted: at most ~300 of 2,000 still fit
    if kind in RETAINED_BY_KEY:
        assert await queue.get_retained("t1999") is not None  # type: ignore[attr-defined]
        assert await queue.get_retained("t0") is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", RETAINED_BY_KEY)
async def test_acked_traces_are_retained_then_pruned(
    kind: str, made: Callable[..., Awaitable[Queue]]
) -> None:
    queue = await made(kind)
    await queue.publish(TRACES_TOPIC, [("trace-1", b"payload")])
    (m,) = await queue.lease(TRACES_TOPIC, 1, 30)
    await queue.ack([m.id])
    assert await queue.get_retained("trace-1") == b"payload"  # type: ignore[attr-defined]
    assert await queue.prune() == 0  # type: ignore[attr-defined]
    assert await queue.prune(now=time.time() + 8 * 86400) == 1  # type: ignore[attr-defined]
    assert await queue.get_retained("trace-1") is None  # type: ignore[attr-defined]


async def test_nats_retains_acked_traces_until_max_age(
    made: Callable[..., Awaitable[Queue]],
) -> None:
    queue = await made("nats", retention_s=1.0)
    assert isinstance(queue, NatsQueue)
    await queue.publish(TRACES_TOPIC, [("trace-1", b"payload")])
    (m,) = await queue.lease(TRACES_TOPIC, 1, 30)
    await queue.ack([m.id])
    assert (await queue.stats()).pending.get(TRACES_TOPIC, 0) == 0
    # acked, yet still in the stream (for replay) until JetStream ages it out
    assert (await queue.jsm.stream_info(queue.traces_stream)).state.messages == 1
    deadline = time.monotonic() + 10
    while (await queue.jsm.stream_info(queue.traces_stream)).state.messages:
        assert time.monotonic() < deadline, "the acked trace was never aged out"
        await asyncio.sleep(0.1)


async def test_nats_refuses_a_trace_over_max_payload_and_stays_connected(
    made: Callable[..., Awaitable[Queue]],
) -> None:
    # the server would close the connection over it, failing every request in flight
    queue = await made("nats")
    assert isinstance(queue, NatsQueue)
    too_big = b"x" * queue.nc.max_payload
    with pytest.raises(PayloadTooLarge):
        await queue.publish("t", [("small", b"x"), ("big", too_big)])
    assert (await queue.stats()).pending.get("t", 0) == 0  # nothing of the batch written
    await queue.publish("t", [("after", b"x")])
    assert [m.key for m in await queue.lease("t", 10, 30)] == ["after"]


async def test_wait_wakes_on_publish(queue: Queue) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await queue.publish("w", [("k", b"v")])

    task = asyncio.create_task(later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await queue.wait("w", 5.0)
    assert loop.time() - started < 2.0
    await task


async def test_concurrent_publishes_all_land(queue: Queue) -> None:
    async def pub(n: int) -> list[int]:
        return await queue.publish("c", [(f"{n}-{i}", b"x") for i in range(20)])

    results = await asyncio.gather(*(pub(n) for n in range(50)))
    all_ids = [i for r in results for i in r]
    assert len(set(all_ids)) == 1000
    got = await queue.lease("c", 2000, 30)
    assert len(got) == 1000


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "q.db")
    await q.start()
    await q.publish("t", [("k1", b"1"), ("k2", b"2")])
    (m, _) = await q.lease("t", 2, 0.1)
    await q.ack([m.id])
    await q.close()
    q2 = SqliteQueue(tmp_path / "q.db")
    await q2.start()
    await asyncio.sleep(0.15)
    assert [x.key for x in await q2.lease("t", 5, 30)] == ["k2"]
    await q2.close()
