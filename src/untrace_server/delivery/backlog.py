"""Backlog guard: one destination that is down for a long time must not take the whole
disk budget and, through ingest's 503s, stall every other destination.

The outbox of a failing destination (its circuit breaker is not closed: it is down, not
merely behind) may hold at most ``delivery.max_backlog_share`` of the queue's budget,
estimated as messages pending times their average size. The pending counts come from
the queue every few seconds, plus what the worker published since; before anything is
shed they are read fresh (at most once a second). Past the share, the worker stops
queueing new deliveries for that destination — counted in
``untrace_dropped_total{where="worker",reason="backlog_full"}`` and per destination as
``untrace_traces_processed_total{status="shed"}``, and logged with the command that
recovers them — while ingest and every other destination go on. The traces themselves
stay retained in the queue: once the destination is back, ``untrace replay
--destination D --since …`` (POST /api/v1/replay) sends exactly what it missed, since a
replay skips what a destination already has. A healthy destination that is only behind
is never shed: its backlog is backpressure, which ingest answers with 503 at the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from untrace_server.queue.base import Queue, QueueStats

__all__ = ["BacklogGuard"]

log = logging.getLogger("untrace.delivery")

_WARN_EVERY_S = 60.0
_REFRESH_S = 1.0  # fresh counts from the queue at most this often, only when in doubt


class BacklogGuard:
    def __init__(
        self, budget_bytes: int, share: float, failing: Callable[[str], bool] = lambda t: True
    ) -> None:
        self.limit = budget_bytes * share
        self.enabled = share < 1.0
        self.failing = failing  # topic → its destination is failing (a healthy one is
        # only behind: its backlog is backpressure, answered by ingest's 503 at the budget)
        self._pending: dict[str, int] = {}  # topic → messages pending at the last stats
        self._added: dict[str, int] = {}  # topic → published since then
        self._size: dict[str, float] = {}  # topic → average message size (moving)
        self._warned: dict[str, float] = {}
        self.shedding_since: dict[str, float] = {}  # topic → first shed, while shedding
        self._refreshed = 0.0

    def suspect(self) -> bool:
        """Whether some outbox may be over its share (by the estimate)."""
        return self.enabled and any(self._over(topic) for topic in self._added)

    async def refresh(self, queue: Queue) -> None:
        """Read the pending counts from the queue now (at most once a second)."""
        if time.monotonic() - self._refreshed >= _REFRESH_S:
            self.update(await queue.stats())

    def update(self, stats: QueueStats) -> None:
        """The queue's pending counts (the upkeep loop reads them every few seconds)."""
        self._refreshed = time.monotonic()
        self._pending = dict(stats.pending)
        self._added.clear()
        for topic in list(self.shedding_since):
            if not self._over(topic):
                log.warning(
                    "%s: outbox back under its share of the queue budget; deliveries queue "
                    "again (replay the traces shed since %s)",
                    topic,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.shedding_since[topic])),
                )
                del self.shedding_since[topic]

    def added(self, topic: str, sizes: Sequence[int]) -> None:
        """``sizes`` (bytes) were just published to ``topic``."""
        if not sizes:
            return
        self._added[topic] = self._added.get(topic, 0) + len(sizes)
        mean = sum(sizes) / len(sizes)
        old = self._size.get(topic)
        self._size[topic] = mean if old is None else 0.9 * old + 0.1 * mean

    def _over(self, topic: str) -> bool:
        count = self._pending.get(topic, 0) + self._added.get(topic, 0)
        return count * self._size.get(topic, 0.0) > self.limit

    def full(self, topic: str) -> bool:
        """Whether new deliveries for ``topic`` must not be queued."""
        if not self.enabled or not self._over(topic) or not self.failing(topic):
            return False
        now = time.time()
        since = self.shedding_since.setdefault(topic, now)
        if now - self._warned.get(topic, 0.0) >= _WARN_EVERY_S:
            self._warned[topic] = now
            log.error(
                "%s: outbox over %.0f MB (its share of the queue budget): new traces are "
                "not queued for it, ingest and other destinations go on; once it is back: "
                "untrace replay --destination %s --since %ds",
                topic,
                self.limit / 1e6,
                topic.split("/", 1)[-1],
                int(now - since) + 60,
            )
        return True
