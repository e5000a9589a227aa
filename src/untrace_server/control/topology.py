"""The effective configuration of every customer — destinations and routing — and its
hot reload.

Two sources meet here: the config file (the GitOps path) and the control store (the
management API and ``untrace rules apply``). Destinations are the union of both (a
file-declared id wins over a stored one of the same id); routing is the newest stored
version of the customer's routing document if there is one, else the file's ``routing``.

``refresh()`` notices a change — the store's change sequence or the file's mtime — and
then rebuilds every pipeline, swaps them in, and reconciles the running deliverers. A
refresh that fails validation keeps the previous configuration and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from untrace_server.config import CustomerConfig, DestinationSpec, Settings, load_settings
from untrace_server.control.store import ControlStore
from untrace_server.delivery.manager import DeliveryManager, DestinationKey
from untrace_server.errors import ConfigError
from untrace_server.pipeline.base import Pipeline
from untrace_server.pipeline.build import build_pipelines

__all__ = ["Topology"]

log = logging.getLogger("untrace.topology")


@dataclass
class _Snapshot:
    customers: dict[str, CustomerConfig]
    pipelines: dict[str, Pipeline]
    routing_versions: dict[str, int] = field(default_factory=dict)


class Topology:
    def __init__(self, settings: Settings, store: ControlStore) -> None:
        self.settings = settings
        self.store = store
        self.delivery: DeliveryManager | None = None
        self.file_customers = settings.customers
        self._file_mtime = _mtime(settings.config_file)
        self._seq = -1
        self._snapshot = _Snapshot(
            settings.customers, build_pipelines(settings.customers, pricing=settings.pricing)
        )
        self._lock = asyncio.Lock()
        self.listeners: list[Callable[[], None]] = []

    # -- reads (hot path: no I/O) ---------------------------------------------------

    def pipeline(self, customer_id: str) -> Pipeline | None:
        return self._snapshot.pipelines.get(customer_id)

    @property
    def customers(self) -> dict[str, CustomerConfig]:
        return self._snapshot.customers

    def destination_specs(self) -> dict[DestinationKey, DestinationSpec]:
        return {
            (customer_id, spec.id): spec
            for customer_id, customer in self._snapshot.customers.items()
            for spec in customer.destinations
        }

    def file_destination_ids(self, customer_id: str) -> set[str]:
        customer = self.file_customers.get(customer_id)
        return {d.id for d in customer.destinations} if customer else set()

    def routing_version(self, customer_id: str) -> int | None:
        return self._snapshot.routing_versions.get(customer_id)

    # -- reload -----------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> bool:
        """Rebuild if the store or the file changed; returns whether anything was applied."""
        async with self._lock:
            seq = await self.store.change_seq()
            mtime = _mtime(self.settings.config_file)
            if not force and seq == self._seq and mtime == self._file_mtime:
                return False
            try:
                if mtime != self._file_mtime and self.settings.config_file:
                    self.file_customers = load_settings(self.settings.config_file).customers
                snapshot = await self._build()
            except ConfigError as exc:
                log.error("configuration change not applied, keeping the previous one: %s", exc)
                self._seq, self._file_mtime = seq, mtime
                return False
            self._seq, self._file_mtime = seq, mtime
            self._snapshot = snapshot
            if self.delivery is not None:
                await self.delivery.reconcile(self.destination_specs())
            for listener in self.listeners:
                listener()
            return True

    async def _build(self) -> _Snapshot:
        stored = await self.store.list_destinations()
        routing = await self.store.latest_routing()
        customers: dict[str, CustomerConfig] = {}
        names = set(self.file_customers) | {d.customer_id for d in stored} | set(routing)
        for name in sorted(names):
            from_file = self.file_customers.get(name) or CustomerConfig()
            file_ids = {d.id for d in from_file.destinations}
            extra = [
                DestinationSpec(id=d.id, type=d.type, config=d.config, enabled=d.enabled)
                for d in stored
                if d.customer_id == name and d.id not in file_ids
            ]
            doc: dict[str, Any] = routing[name].document if name in routing else from_file.routing
            customers[name] = CustomerConfig.model_construct(
                destinations=[*from_file.destinations, *extra],
                routing=doc,
                proxy=from_file.proxy,
            )
        pipelines = build_pipelines(
            customers, pricing=self.settings.pricing, previous=self._snapshot.pipelines
        )
        versions = {name: r.version for name, r in routing.items()}
        return _Snapshot(customers, pipelines, versions)

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll for changes every ``interval_s`` (runs as a background task)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("configuration refresh failed")


def _mtime(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
