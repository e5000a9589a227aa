"""Delivery layers alone: retry schedule, circuit breaker, and the deliverer against an
in-memory queue and a recording fake destination."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest

from untrace_server import model
from untrace_server.delivery.breaker import BreakerState, CircuitBreaker
from untrace_server.delivery.deliverer import BatchLimits, Deliverer
from untrace_server.delivery.retry import RetrySchedule
from untrace_server.destinations.base import (
    BatchResult,
    DestinationConfig,
    HealthStatus,
    classify_http_status,
    parse_retry_after,
)
from untrace_server.errors import (
    DeliveryError,
    PartialDeliveryError,
    PermanentError,
    RetryableError,
)
from untrace_server.queue.memory import MemoryQueue

TOPIC = "deliver.c/fake"


def test_retry_schedule_doubles_caps_and_honours_retry_after() -> None:
    s = RetrySchedule(initial_s=1, multiplier=2, max_s=10, jitter=0.0, max_attempts=4)
    assert [s.delay(a) for a in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert s.delay(1, retry_after=7) == 7
    assert s.delay(4, retry_after=3) == 8
    assert not s.exhausted(3) and s.exhausted(4)
    jittered = RetrySchedule(initial_s=1, jitter=0.5)
    delays = {jittered.delay(1) for _ in range(50)}
    assert all(1 <= d <= 1.5 for d in delays) and len(delays) > 1


def test_breaker_opens_half_opens_and_closes() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=lambda: now[0])
    for _ in range(2):
        b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    now[0] = 9.9
    assert not b.allow() and b.wait_time() == pytest.approx(0.1)
    now[0] = 10.0
    assert b.state is BreakerState.HALF_OPEN and b.allow()
    b.record_failure()  # the trial failed: open again at once
    assert b.state is BreakerState.OPEN
    now[0] = 20.0
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    b.record_failure(retry_after=60)
    b.record_failure()
    b.record_failure()
    now[0] = 50.0
    assert b.state is BreakerState.OPEN  # a long Retry-After keeps it open longer


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, None),
        (204, None),
        (400, PermanentError),
        (401, PermanentError),
        (404, PermanentError),
        (408, RetryableError),
        (425, RetryableError),
        (429, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (504, RetryableError),
        (507, RetryableError),
    ],
)
def test_classify_http_status(status: int, outcome: type[Exception] | None) -> None:
    if outcome is None:
        classify_http_status(status)
    else:
        with pytest.raises(outcome):
            classify_http_status(status, body="nope")


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now=4070908700.0) == 100.0
    with pytest.raises(RetryableError) as info:
        classify_http_status(429, retry_after="12")
    assert info.value.retry_after == 12.0


class FakeDestination:
    Config: ClassVar[type[DestinationConfig]] = DestinationConfig

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail_with: list[DeliveryError] = []

    async def start(self) -> None: ...

    async def send_batch(self, traces: Sequence[model.Trace]) -> BatchResult:
        self.batches.append([t.id for t in traces])
        if self.fail_with:
            raise self.fail_with.pop(0)
        return BatchResult(len(traces))

    async def health_check(self) -> HealthStatus:
        return HealthStatus(True)

    async def shutdown(self) -> None: ...


async def setup(n: int, **limits: float) -> tuple[MemoryQueue, FakeDestination, Deliverer]:
    queue = MemoryQueue()
    await queue.start()
    await queue.publish(
        TOPIC, [(f"t{i}", model.encode(model.Trace(1, 2, id=f"t{i}"))) for i in range(n)]
    )
    dest = FakeDestination()
    deliverer = Deliverer(
        queue=queue,
        topic=TOPIC,
        destination=dest,
        label="c/fake",
        customer_id="c",
        destination_id="fake",
        schedule=RetrySchedule(initial_s=0.05, jitter=0, max_attempts=3),
        breaker=CircuitBreaker(100, 1),
        limits=BatchLimits(**limits),  # type: ignore[arg-type]
    )
    return queue, dest, deliverer


async def drain(queue: MemoryQueue, deliverer: Deliverer, seconds: float = 1.0) -> None:
    task = asyncio.create_task(deliverer.run())
    await asyncio.sleep(seconds)
    deliverer.stop()
    await asyncio.wait_for(task, 5)


async def test_batches_by_count_and_bytes() -> None:
    queue, dest, deliverer = await setup(25, max_items=10, max_bytes=10_000, max_wait_s=0.0)
    await drain(queue, deliverer, 0.3)
    assert [len(b) for b in dest.batches] == [10, 10, 5]
    size = len(model.encode(model.Trace(1, 2, id="t10")))
    queue2, dest2, deliverer2 = await setup(9, max_items=100, max_bytes=size * 4, max_wait_s=0.0)
    await drain(queue2, deliverer2, 0.3)
    assert [len(b) for b in dest2.batches] == [4, 4, 1]


async def test_retryable_then_success_and_exhaustion_to_dlq() -> None:
    queue, dest, deliverer = await setup(2, max_wait_s=0.0)
    dest.fail_with = [RetryableError("503"), RetryableError("503")]
    await drain(queue, deliverer, 0.5)
    assert dest.batches == [["t0", "t1"]] * 3
    assert (await queue.stats()).pending.get(TOPIC, 0) == 0 and await queue.list_dead() == []

    queue, dest, deliverer = await setup(1, max_wait_s=0.0)
    dest.fail_with = [RetryableError("503")] * 5
    await drain(queue, deliverer, 0.6)
    (dead,) = await queue.list_dead()
    assert len(dest.batches) == 3 and "gave up after 3 attempts" in dead.error


async def test_permanent_error_goes_to_dlq_without_retry() -> None:
    queue, dest, deliverer = await setup(3, max_wait_s=0.0)
    dest.fail_with = [PermanentError("HTTP 400: bad field")]
    await drain(queue, deliverer, 0.3)
    assert len(dest.batches) == 1
    assert sorted(d.key for d in await queue.list_dead()) == ["t0", "t1", "t2"]
    assert all("HTTP 400" in d.error for d in await queue.list_dead())


async def test_partial_failure_acks_the_rest() -> None:
    queue, dest, deliverer = await setup(3, max_wait_s=0.0)
    dest.fail_with = [
        PartialDeliveryError("1 of 3", {1: PermanentError("bad"), 2: RetryableError("later")})
    ]
    await drain(queue, deliverer, 0.4)
    assert dest.batches[0] == ["t0", "t1", "t2"] and dest.batches[1] == ["t2"]
    assert [d.key for d in await queue.list_dead()] == ["t1"]
    assert (await queue.stats()).pending.get(TOPIC, 0) == 0


async def test_open_breaker_leases_nothing() -> None:
    queue, dest, deliverer = await setup(5, max_wait_s=0.0)
    deliverer.breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=60)
    dest.fail_with = [RetryableError("down")]
    await drain(queue, deliverer, 0.5)
    assert len(dest.batches) == 1  # no second attempt while open
    assert (await queue.stats()).pending[TOPIC] == 5
