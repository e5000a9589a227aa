"""The backlog guard's decision: shed new deliveries only for a failing destination
whose outbox is over its share of the budget, judged on fresh counts."""

from __future__ import annotations

from typing import Any

from untrace_server.delivery.backlog import BacklogGuard
from untrace_server.queue.base import QueueStats

DOWN, BEHIND = "deliver.c/down", "deliver.c/behind"


class CountingQueue:
    """Answers stats() with the pending counts it is given, counting the calls."""

    def __init__(self, pending: dict[str, int]) -> None:
        self.pending = pending
        self.calls = 0

    async def stats(self) -> QueueStats:
        self.calls += 1
        return QueueStats(dict(self.pending), {}, 0, 0)


async def test_only_a_failing_destination_over_its_share_is_shed() -> None:
    guard = BacklogGuard(1_000_000, 0.1, failing=lambda topic: topic == DOWN)  # 100 KB each
    queue: Any = CountingQueue({DOWN: 0, BEHIND: 0})
    for topic in (DOWN, BEHIND):
        guard.added(topic, [1_000] * 150)  # 150 KB published to each since the last stats
    assert guard.suspect()
    queue.pending = {DOWN: 150, BEHIND: 150}
    await guard.refresh(queue)
    assert guard.full(DOWN) and DOWN in guard.shedding_since
    assert not guard.full(BEHIND)  # behind, not failing: backpressure, never shed
    await guard.refresh(queue)
    assert queue.calls == 1  # at most once a second

    queue.pending = {DOWN: 10, BEHIND: 0}  # it came back and drained
    guard.update(await queue.stats())
    assert not guard.full(DOWN) and DOWN not in guard.shedding_since


async def test_a_burst_that_drains_is_not_shed() -> None:
    guard = BacklogGuard(1_000_000, 0.1)
    queue: Any = CountingQueue({DOWN: 0})
    guard.added(DOWN, [1_000] * 500)  # by the estimate: 500 KB
    assert guard.suspect()
    await guard.refresh(queue)  # the queue says it is all delivered already
    assert not guard.full(DOWN)


def test_share_one_disables_the_guard() -> None:
    guard = BacklogGuard(1_000, 1.0)
    guard.added(DOWN, [1_000] * 10)
    assert not guard.suspect() and not guard.full(DOWN)
