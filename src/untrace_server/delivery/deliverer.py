"""One deliverer per destination: lease from its outbox topic, batch, send through the
circuit breaker with a timeout, then ack, schedule a retry, or dead-letter.

Each destination has its own outbox, breaker and retry schedule, so a slow or broken
platform never delays another. Retry state lives in the queue (a message's attempt
count and visibility time), so it survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
from opentelemetry.trace import Status, StatusCode

from untrace_server import model
from untrace_server.delivery.breaker import CircuitBreaker
from untrace_server.delivery.retry import RetrySchedule
from untrace_server.destinations.base import Destination
from untrace_server.errors import (
    DeliveryError,
    PartialDeliveryError,
    PermanentError,
    QueueError,
    RetryableError,
)
from untrace_server.observability import metrics
from untrace_server.observability.tracing import tracer
from untrace_server.queue.base import Message, MessageId, Queue

__all__ = ["BatchLimits", "Deliverer"]

log = logging.getLogger("untrace.delivery")


@dataclass(frozen=True)
class BatchLimits:
    max_items: int = 100
    max_bytes: int = 4 * 1024 * 1024
    max_wait_s: float = 0.5


class Deliverer:
    def __init__(
        self,
        *,
        queue: Queue,
        topic: str,
        destination: Destination,
        label: str,
        customer_id: str,
        destination_id: str,
        schedule: RetrySchedule,
        breaker: CircuitBreaker,
        limits: BatchLimits,
        visibility_s: float = 120.0,
        send_timeout_s: float = 30.0,
        poll_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.topic = topic
        self.destination = destination
        self.label = label
        self.customer_id = customer_id
        self.destination_id = destination_id
        self.schedule = schedule
        self.breaker = breaker
        self.limits = limits
        self.visibility_s = visibility_s
        self.send_timeout_s = send_timeout_s
        self.poll_s = poll_s
        # payload → the Trace to send (control/fields.py swaps in one that decrypts fields)
        self.decode_payload: Callable[[bytes], model.Trace] = model.decode
        self._stopping = asyncio.Event()
        self._next_retry = 0.0  # monotonic time of the earliest retry this loop scheduled
        self.last_success: float | None = None
        self.last_error: str | None = None

    def stop(self) -> None:
        """Ask the loop to finish its in-flight batch and return."""
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self.breaker.allow():
                    metrics.BREAKER_STATE.labels(self.label).set(int(self.breaker.state))
                    await self._sleep(min(self.breaker.wait_time(), self.poll_s))
                    continue
                batch = await self._collect()
                if batch:
                    await self.deliver(batch)
            except QueueError as exc:
                log.warning("deliverer %s: queue error: %s", self.label, exc)
                await self._sleep(self.poll_s)
            except Exception:  # never crash after startup
                log.exception("deliverer %s: unexpected error", self.label)
                await self._sleep(self.poll_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _collect(self) -> list[Message]:
        limits = self.limits
        batch = await self.queue.lease(self.topic, limits.max_items, self.visibility_s)
        if not batch:
            # wake for new messages, or when the earliest retry we scheduled falls due
            due = self._next_retry - time.monotonic() if self._next_retry else self.poll_s
            await self.queue.wait(self.topic, max(0.0, min(self.poll_s, due)))
            if self._next_retry and time.monotonic() >= self._next_retry:
                self._next_retry = 0.0
            return []
        deadline = time.monotonic() + limits.max_wait_s
        size = sum(len(m.payload) for m in batch)
        while len(batch) < limits.max_items and size < limits.max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            await self.queue.wait(self.topic, remaining)
            more = await self.queue.lease(
                self.topic, limits.max_items - len(batch), self.visibility_s
            )
            batch.extend(more)
            size += sum(len(m.payload) for m in more)
        return batch

    async def deliver(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` in chunks within the byte limit."""
        chunk: list[Message] = []
        size = 0
        for message in messages:
            if chunk and size + len(message.payload) > self.limits.max_bytes:
                await self._send(chunk)
                chunk, size = [], 0
            chunk.append(message)
            size += len(message.payload)
        if chunk:
            await self._send(chunk)

    async def _send(self, messages: list[Message]) -> None:
        with tracer.start_as_current_span("untrace.deliver") as span:
            span.set_attribute("untrace.destination", self.label)
            span.set_attribute("untrace.batch.size", len(messages))
            outcome = await self._send_batch(messages)
            span.set_attribute("untrace.outcome", outcome)
            if outcome != "success" and self.last_error:
                span.set_status(Status(StatusCode.ERROR, self.last_error[:500]))

    async def _send_batch(self, messages: list[Message]) -> str:
        """Send, then ack, retry or dead-letter; returns the outcome for the span."""
        traces: list[model.Trace] = []
        sendable: list[Message] = []
        for message in messages:
            try:
                traces.append(self.decode_payload(message.payload))
                sendable.append(message)
            except msgspec.DecodeError as exc:
                await self._dead([message], f"undecodable payload: {exc}")
        if not sendable:
            return "undecodable"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await self.destination.send_batch(traces)
        except PartialDeliveryError as exc:
            outcome = "partial"
            self._observe(started, outcome)
            failed = {i: err for i, err in exc.failed.items() if 0 <= i < len(sendable)}
            await self._ack([m for i, m in enumerate(sendable) if i not in failed])
            for i, err in failed.items():
                await self._fail([sendable[i]], err)
        except (DeliveryError, TimeoutError, OSError) as exc:
            outcome = "error"
            self._observe(started, outcome)
            err = exc if isinstance(exc, DeliveryError) else RetryableError(_describe(exc))
            await self._fail(sendable, err)
        except Exception as exc:  # a connector bug: keep the data, retry later
            log.exception("destination %s raised unexpectedly", self.label)
            outcome = "error"
            self._observe(started, outcome)
            await self._fail(sendable, RetryableError(_describe(exc)))
        else:
            outcome = "success"
            self._observe(started, outcome)
            self.breaker.record_success()
            self.last_success = time.time()
            await self._ack(sendable)
        metrics.BREAKER_STATE.labels(self.label).set(int(self.breaker.state))
        return outcome

    def _observe(self, started: float, status: str) -> None:
        metrics.DESTINATION_LATENCY.labels(self.label).observe(time.perf_counter() - started)
        metrics.DESTINATION_REQUESTS.labels(self.label, status).inc()

    async def _ack(self, messages: Sequence[Message]) -> None:
        if messages:
            await self.queue.ack([m.id for m in messages])
            metrics.TRACES_PROCESSED.labels(self.customer_id, self.destination_id, "delivered").inc(
                len(messages)
            )

    async def _fail(self, messages: Sequence[Message], error: DeliveryError) -> None:
        self.last_error = str(error)
        if isinstance(error, PermanentError):
            await self._dead(messages, f"permanent: {error}")
            return
        retry_after = error.retry_after if isinstance(error, RetryableError) else None
        self.breaker.record_failure(retry_after)
        exhausted = [m for m in messages if self.schedule.exhausted(m.attempts)]
        if exhausted:
            await self._dead(exhausted, f"gave up after {exhausted[0].attempts} attempts: {error}")
        by_delay: dict[float, list[MessageId]] = {}
        for m in messages:
            if not self.schedule.exhausted(m.attempts):
                delay = round(self.schedule.delay(m.attempts, retry_after), 3)
                by_delay.setdefault(delay, []).append(m.id)
        for delay, ids in by_delay.items():
            if getattr(self.queue, "supports_status", False):  # keeps the last error
                await self.queue.nack(ids, delay, error=str(error))  # type: ignore[call-arg]
            else:
                await self.queue.nack(ids, delay)
            due = time.monotonic() + delay
            self._next_retry = min(self._next_retry, due) if self._next_retry else due
            metrics.TRACES_PROCESSED.labels(self.customer_id, self.destination_id, "retried").inc(
                len(ids)
            )
        log.warning(
            "destination %s: %d traces will be retried: %s", self.label, len(messages), error
        )

    async def _dead(self, messages: Sequence[Message], error: str) -> None:
        await self.queue.dead([m.id for m in messages], error)
        metrics.TRACES_PROCESSED.labels(self.customer_id, self.destination_id, "dead").inc(
            len(messages)
        )
        log.error(
            "destination %s: %d traces moved to the dead-letter queue: %s",
            self.label,
            len(messages),
            error,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "send timed out"
    return f"{type(exc).__name__}: {exc}"
