"""The capture buffer: bounded, in memory, drained off the request path.

The request path only appends an ``Exchange`` (raw bytes and timestamps) to a deque. A
background task wakes every ``flush_interval_s`` (or sooner when a batch is ready),
turns exchanges into Traces and hands them to ``TraceSink.submit`` in batches per
customer. When the deque is full the oldest exchange is dropped; when the queue cannot
take a batch, it is dropped. Every drop is counted in ``untrace_dropped_total{where=
"proxy"}``: the caller's LLM call never waits for, or fails because of, tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from untrace_server import model
from untrace_server.errors import QueueFull, QueueUnavailable
from untrace_server.ingest.base import TraceSink
from untrace_server.observability.metrics import DROPPED

__all__ = ["CaptureBuffer"]

log = logging.getLogger("untrace.proxy")

_YIELD_EVERY = 16


class CaptureBuffer:
    def __init__(
        self,
        sink: TraceSink,
        to_trace: Callable[[Any], model.Trace | None],
        *,
        size: int = 10_000,
        batch_size: int = 256,
        flush_interval_s: float = 0.05,
    ) -> None:
        self.sink = sink
        self.to_trace = to_trace
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._items: deque[Any] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropped_full = DROPPED.labels("proxy", "buffer_full")

    def __len__(self) -> int:
        return len(self._items)

    def put(self, exchange: Any) -> None:
        """Never blocks, never raises: a full buffer drops its oldest item."""
        items = self._items
        if len(items) == items.maxlen:
            self._dropped_full.inc()
        items.append(exchange)
        if len(items) >= self.batch_size:
            self._ready.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="proxy-capture")

    async def shutdown(self) -> None:
        """Stop the drainer, then flush what is left (before the queue closes)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._items:
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.flush_interval_s)
            self._ready.clear()
            while self._items:
                try:
                    await self.flush()
                except Exception:  # never let the drainer die
                    log.exception("proxy capture flush failed")
                await asyncio.sleep(0)  # let requests run between batches

    async def flush(self) -> int:
        """Convert and submit up to one batch; returns how many traces were accepted."""
        items = self._items
        batch = [items.popleft() for _ in range(min(self.batch_size, len(items)))]
        by_customer: dict[str, list[model.Trace]] = {}
        for n, exchange in enumerate(batch, 1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # short slices: requests never wait on a whole batch
            try:
                trace = self.to_trace(exchange)
            except Exception:
                DROPPED.labels("proxy", "capture_error").inc()
                log.exception("proxy capture: could not build a trace")
                continue
            if trace is not None:
                by_customer.setdefault(exchange.customer_id, []).append(trace)
        accepted = 0
        for customer_id, traces in by_customer.items():
            try:
                await self.sink.submit(traces, customer_id)
                accepted += len(traces)
            except QueueFull:
                DROPPED.labels("proxy", "queue_full").inc(len(traces))
            except QueueUnavailable:
                DROPPED.labels("proxy", "queue_unavailable").inc(len(traces))
        return accepted
