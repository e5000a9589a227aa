"""Starts one Deliverer per configured destination and stops them within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from untrace_server.config import DeliveryConfig, Settings
from untrace_server.delivery.breaker import CircuitBreaker
from untrace_server.delivery.deliverer import BatchLimits, Deliverer
from untrace_server.delivery.retry import RetrySchedule
from untrace_server.destinations import registry
from untrace_server.destinations.base import Destination, DestinationContext
from untrace_server.queue.base import Queue, delivery_topic

__all__ = ["DeliveryManager", "build_destinations"]

log = logging.getLogger("untrace.delivery")


@dataclass
class _Running:
    deliverer: Deliverer
    task: asyncio.Task[None]


def build_destinations(settings: Settings) -> dict[tuple[str, str], Destination]:
    """Validate and construct every enabled destination of every customer (not started).
    Raises ConfigError on the first bad one."""
    built: dict[tuple[str, str], Destination] = {}
    for customer_id, customer in settings.customers.items():
        for spec in customer.destinations:
            if not spec.enabled:
                continue
            context = DestinationContext(spec.id, customer_id, str(settings.data_dir))
            built[(customer_id, spec.id)] = registry.build(spec.type, spec.config, context)
    return built


def schedule_from(config: DeliveryConfig) -> RetrySchedule:
    return RetrySchedule(
        initial_s=config.backoff_initial_s,
        multiplier=config.backoff_multiplier,
        max_s=config.backoff_max_s,
        jitter=config.jitter,
        max_attempts=config.max_attempts,
    )


class DeliveryManager:
    def __init__(self, queue: Queue, config: DeliveryConfig) -> None:
        self.queue = queue
        self.config = config
        self.running: dict[tuple[str, str], _Running] = {}

    async def start(self, destinations: dict[tuple[str, str], Destination]) -> None:
        schedule = schedule_from(self.config)
        limits = BatchLimits(self.config.max_batch, self.config.max_batch_bytes, self.config.max_wait_s)
        for (customer_id, destination_id), destination in destinations.items():
            await destination.start()
            deliverer = Deliverer(
                queue=self.queue,
                topic=delivery_topic(customer_id, destination_id),
                destination=destination,
                label=f"{customer_id}/{destination_id}",
                customer_id=customer_id,
                destination_id=destination_id,
                schedule=schedule,
                breaker=CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s),
                limits=limits,
                visibility_s=self.config.visibility_s,
                send_timeout_s=self.config.send_timeout_s,
            )
            task = asyncio.create_task(deliverer.run(), name=f"deliver {deliverer.label}")
            self.running[(customer_id, destination_id)] = _Running(deliverer, task)

    async def stop(self, grace_s: float) -> None:
        """Let in-flight batches finish within ``grace_s``; what is left stays durable."""
        for running in self.running.values():
            running.deliverer.stop()
        tasks = [r.task for r in self.running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for running in self.running.values():
            try:
                await running.deliverer.destination.shutdown()
            except Exception:
                log.exception("shutdown of %s failed", running.deliverer.label)
        self.running.clear()
