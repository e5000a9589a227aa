"""Per-key rate limits — requests/s and traces/s — through the ``limits`` library
(moving window; memory storage in one process, Redis storage in a fleet).

A refused hit raises RateLimited (429) with ``Retry-After`` and ``X-RateLimit-*``; an
allowed one records ``X-RateLimit-*`` for the response.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from untrace_server import model
from untrace_server.control.keys import ApiKey
from untrace_server.control.netallow import current_context
from untrace_server.errors import RateLimited
from untrace_server.ingest.base import TraceSink
from untrace_server.queue.base import Queue

__all__ = ["KeyRateLimiter", "RateLimitedSink"]


class KeyRateLimiter:
    def __init__(
        self,
        storage_url: str = "memory://",
        default_requests_per_s: int | None = None,
        default_traces_per_s: int | None = None,
    ) -> None:
        url = storage_url if storage_url.startswith("async+") else "async+" + storage_url
        self.limiter = MovingWindowRateLimiter(storage_from_string(url))
        self.default_requests_per_s = default_requests_per_s
        self.default_traces_per_s = default_traces_per_s
        self.keys: dict[str, ApiKey] = {}  # key id → key, for the traces/s limit

    async def _hit(self, kind: str, key_id: str, per_s: int | None, cost: int) -> None:
        if not per_s:
            return
        item = RateLimitItemPerSecond(per_s)
        allowed = await self.limiter.hit(item, kind, key_id, cost=cost)
        stats = await self.limiter.get_window_stats(item, kind, key_id)
        reset = max(stats.reset_time, time.time())
        headers = {
            "X-RateLimit-Limit": str(per_s),
            "X-RateLimit-Remaining": str(max(0, stats.remaining)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
            unit = "requests" if kind == "req" else "traces"
            raise RateLimited(
                f"rate limit of {per_s} {unit}/s exceeded for this key", headers=headers
            )
        context = current_context()
        if context is not None:
            context.headers.update(headers)

    async def hit_request(self, key: ApiKey) -> None:
        self.keys[key.id] = key
        await self._hit("req", key.id, key.requests_per_s or self.default_requests_per_s, 1)

    async def hit_traces(self, key_id: str, count: int) -> None:
        key = self.keys.get(key_id)
        per_s = (key.traces_per_s if key else None) or self.default_traces_per_s
        await self._hit("traces", key_id, per_s, count)


class RateLimitedSink(TraceSink):
    """The trace sink with the calling key's traces/s limit applied before publishing."""

    def __init__(self, queue: Queue, limiter: KeyRateLimiter) -> None:
        super().__init__(queue)
        self.limiter = limiter

    async def submit(self, traces: Sequence[model.Trace], customer_id: str) -> list[str]:
        context = current_context()
        if context is not None and context.key_id is not None and traces:
            await self.limiter.hit_traces(context.key_id, len(traces))
        return await super().submit(traces, customer_id)
