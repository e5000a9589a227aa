"""The worker: consume ``traces``, run each customer's pipeline, write one delivery per
(trace, destination) to that destination's outbox topic, then ack.

Publishing happens before the ack, so a crash in between redelivers (at least once);
destinations dedupe by ids derived from the trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec

from untrace_server import model
from untrace_server.delivery.backlog import BacklogGuard
from untrace_server.errors import PayloadTooLarge, QueueError, QueueFull
from untrace_server.observability import metrics
from untrace_server.observability.tracing import tracer
from untrace_server.pipeline.base import Pipeline
from untrace_server.queue.base import TRACES_TOPIC, Message, Queue, delivery_topic

__all__ = ["TraceWorker"]

log = logging.getLogger("untrace.worker")


class TraceWorker:
    def __init__(
        self,
        queue: Queue,
        pipelines: Callable[[str], Pipeline | None],
        *,
        batch: int = 256,
        visibility_s: float = 60.0,
        poll_s: float = 1.0,
        backlog: BacklogGuard | None = None,
    ) -> None:
        self.queue = queue
        self.backlog = backlog
        self.pipelines = pipelines
        self.batch = batch
        self.visibility_s = visibility_s
        self.poll_s = poll_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = await self.queue.lease(TRACES_TOPIC, self.batch, self.visibility_s)
                if not messages:
                    await self.queue.wait(TRACES_TOPIC, self.poll_s)
                    continue
                await self.process(messages)
            except QueueFull as exc:
                log.warning("worker: outbox full, backing off: %s", exc)
                await self._sleep(exc.retry_after)
            except QueueError as exc:
                log.warning("worker: queue error: %s", exc)
                await self._sleep(self.poll_s)
            except Exception:  # never crash after startup
                log.exception("worker: unexpected error")
                await self._sleep(self.poll_s)

    async def _publish(self, topic: str, items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Publish ``items``; one the queue can never take (larger than its largest
        message, as NATS's max_payload) is dropped and counted instead of failing the
        batch forever. Returns what was published."""
        try:
            await self.queue.publish(topic, items)
            return items
        except PayloadTooLarge:
            pass
        kept = []
        for item in items:
            try:
                await self.queue.publish(topic, [item])
                kept.append(item)
            except PayloadTooLarge as exc:
                metrics.DROPPED.labels("worker", "too_large_for_queue").inc()
                log.error("worker: trace %s not queued for %s: %s", item[0], topic, exc)
        return kept

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def process(self, messages: list[Message]) -> None:
        with tracer.start_as_current_span("untrace.route") as span:
            span.set_attribute("untrace.batch.size", len(messages))
            routed = await self._process(messages)
            span.set_attribute("untrace.routes", routed)

    async def _process(self, messages: list[Message]) -> int:
        """Route ``messages``, publish their deliveries, ack them; returns the routes."""
        started = time.perf_counter()
        if self.backlog is not None and self.backlog.suspect():
            await self.backlog.refresh(self.queue)  # before shedding anything: be sure
        outbox: dict[str, list[tuple[str, bytes]]] = {}
        for message in messages:
            try:
                trace = model.decode(message.payload)
            except msgspec.DecodeError:
                log.error("worker: undecodable trace %s dropped", message.key)
                metrics.DROPPED.labels("worker", "undecodable").inc()
                continue
            customer = trace.customer_id or ""
            pipeline = self.pipelines(customer)
            if pipeline is None:
                metrics.DROPPED.labels("worker", "unknown_customer").inc()
                continue
            routes = pipeline.process(trace)
            if not routes:
                metrics.TRACES_PROCESSED.labels(customer, "", "unrouted").inc()
            for route in routes:
                topic = delivery_topic(customer, route.destination_id)
                if self.backlog is not None and self.backlog.full(topic):
                    metrics.DROPPED.labels("worker", "backlog_full").inc()
                    metrics.TRACES_PROCESSED.labels(customer, route.destination_id, "shed").inc()
                    continue
                outbox.setdefault(topic, []).append((route.trace.id, model.encode(route.trace)))
                metrics.TRACES_PROCESSED.labels(customer, route.destination_id, "routed").inc()
        metrics.PROCESSING_LATENCY.labels("route").observe(time.perf_counter() - started)
        try:
            for topic, items in outbox.items():
                items = await self._publish(topic, items)
                if self.backlog is not None:
                    self.backlog.added(topic, [len(payload) for _, payload in items])
        except QueueFull:
            await self.queue.nack([m.id for m in messages], 5.0)
            raise
        await self.queue.ack([m.id for m in messages])
        return sum(len(items) for items in outbox.values())
