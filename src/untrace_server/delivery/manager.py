"""Runs one Deliverer per destination, and keeps the running set equal to the configured
set: ``reconcile`` starts new destinations, restarts changed ones and stops removed ones
without touching the others (their outboxes are durable, so a restart loses nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from untrace_server.config import DeliveryConfig, DestinationSpec
from untrace_server.delivery.breaker import BreakerState, CircuitBreaker
from untrace_server.delivery.deliverer import BatchLimits, Deliverer
from untrace_server.delivery.retry import RetrySchedule
from untrace_server.destinations import registry
from untrace_server.destinations.base import Destination, DestinationContext
from untrace_server.destinations.egress import EgressPolicy
from untrace_server.errors import ConfigError
from untrace_server.queue.base import DELIVERY_PREFIX, Queue, delivery_topic

__all__ = ["DeliveryManager", "DestinationKey", "build_destination", "fingerprint"]

log = logging.getLogger("untrace.delivery")

DestinationKey = tuple[str, str]  # (customer id, destination id)


def fingerprint(spec: DestinationSpec) -> str:
    return json.dumps([spec.type, spec.config], sort_keys=True, default=str)


def build_destination(
    customer_id: str, spec: DestinationSpec, data_dir: str, egress: EgressPolicy | None = None
) -> Destination:
    """Validate and construct one destination (not started); ConfigError if invalid."""
    context = DestinationContext(spec.id, customer_id, data_dir, egress)
    return registry.build(spec.type, spec.config, context)


def schedule_from(config: DeliveryConfig) -> RetrySchedule:
    return RetrySchedule(
        initial_s=config.backoff_initial_s,
        multiplier=config.backoff_multiplier,
        max_s=config.backoff_max_s,
        jitter=config.jitter,
        max_attempts=config.max_attempts,
    )


@dataclass
class _Running:
    deliverer: Deliverer
    task: asyncio.Task[None]
    fingerprint: str


class DeliveryManager:
    def __init__(
        self,
        queue: Queue,
        config: DeliveryConfig,
        data_dir: str,
        grace_s: float = 10.0,
        *,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.queue = queue
        self.config = config
        self.data_dir = data_dir
        self.egress = egress
        self.grace_s = grace_s
        self.running: dict[DestinationKey, _Running] = {}
        self._lock = asyncio.Lock()

    def deliverer(self, key: DestinationKey) -> Deliverer | None:
        running = self.running.get(key)
        return None if running is None else running.deliverer

    def failing(self, topic: str) -> bool:
        """Whether the destination of a delivery topic is failing (breaker not closed)."""
        customer_id, _, destination_id = topic.removeprefix(DELIVERY_PREFIX).partition("/")
        deliverer = self.deliverer((customer_id, destination_id))
        return deliverer is not None and deliverer.breaker.state != BreakerState.CLOSED

    async def reconcile(self, specs: Mapping[DestinationKey, DestinationSpec]) -> None:
        async with self._lock:
            wanted = {k: s for k, s in specs.items() if s.enabled}
            for key in [k for k in self.running if k not in wanted]:
                await self._stop(key)
            for key, spec in wanted.items():
                current = self.running.get(key)
                if current is not None and current.fingerprint == fingerprint(spec):
                    continue
                try:
                    destination = build_destination(key[0], spec, self.data_dir, self.egress)
                except ConfigError as exc:
                    log.error("destination %s/%s not started: %s", key[0], key[1], exc)
                    continue
                if current is not None:
                    await self._stop(key)
                await self._start(key, destination, fingerprint(spec))

    async def _start(self, key: DestinationKey, destination: Destination, print_: str) -> None:
        customer_id, destination_id = key
        await destination.start()
        deliverer = Deliverer(
            queue=self.queue,
            topic=delivery_topic(customer_id, destination_id),
            destination=destination,
            label=f"{customer_id}/{destination_id}",
            customer_id=customer_id,
            destination_id=destination_id,
            schedule=schedule_from(self.config),
            breaker=CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s),
            limits=BatchLimits(
                self.config.max_batch, self.config.max_batch_bytes, self.config.max_wait_s
            ),
            visibility_s=self.config.visibility_s,
            send_timeout_s=self.config.send_timeout_s,
        )
        task = asyncio.create_task(deliverer.run(), name=f"deliver {deliverer.label}")
        self.running[key] = _Running(deliverer, task, print_)

    async def _stop(self, key: DestinationKey) -> None:
        running = self.running.pop(key)
        await _stop_all([running], self.grace_s)

    async def stop(self, grace_s: float | None = None) -> None:
        """Let in-flight batches finish within the grace period; the rest stays durable."""
        async with self._lock:
            running, self.running = list(self.running.values()), {}
            await _stop_all(running, self.grace_s if grace_s is None else grace_s)


async def _stop_all(running: list[_Running], grace_s: float) -> None:
    for r in running:
        r.deliverer.stop()
    tasks = [r.task for r in running]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for r in running:
        try:
            await r.deliverer.destination.shutdown()
        except Exception:
            log.exception("shutdown of %s failed", r.deliverer.label)
