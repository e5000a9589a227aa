"""A customer's destinations as users manage them — the rules the management API and the
offline CLI share: file-declared destinations are listed but GitOps-owned (Conflict),
configs are validated by their connector (ConfigError), secrets are masked in every
answer and a masked value sent back keeps the stored secret, and a destination the
routing still uses cannot be deleted."""

from __future__ import annotations

from typing import Any

from untrace_server.config import DestinationSpec
from untrace_server.control.secrets import mask_config, merge_masked
from untrace_server.control.topology import Topology
from untrace_server.destinations import registry
from untrace_server.errors import Conflict, NotFound

__all__ = ["DestinationCatalog"]


def _out(spec: DestinationSpec, source: str, stored: Any = None) -> dict[str, Any]:
    return {
        "id": spec.id,
        "type": spec.type,
        "enabled": spec.enabled,
        "config": mask_config(spec.type, spec.config),
        "source": source,
        "created_at": getattr(stored, "created_at", None),
        "updated_at": getattr(stored, "updated_at", None),
    }


class DestinationCatalog:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.store = topology.store

    async def effective(self, customer: str) -> dict[str, dict[str, Any]]:
        """Every destination of ``customer``, file-declared first, secrets masked."""
        file_ids = self.topology.file_destination_ids(customer)
        out = {}
        file_customer = self.topology.file_customers.get(customer)
        for spec in file_customer.destinations if file_customer else []:
            out[spec.id] = _out(spec, "file")
        for d in await self.store.list_destinations(customer):
            if d.id not in file_ids:
                spec = DestinationSpec.model_construct(
                    id=d.id, type=d.type, config=d.config, enabled=d.enabled
                )
                out[d.id] = _out(spec, "api", d)
        return out

    async def create(
        self, customer: str, dest_id: str, type_: str, config: dict[str, Any], enabled: bool
    ) -> dict[str, Any]:
        if dest_id in await self.effective(customer):
            raise Conflict(f"destination {dest_id!r} already exists")
        return (await self._store(customer, dest_id, type_, config, enabled))[0]

    async def put(
        self, customer: str, dest_id: str, type_: str, config: dict[str, Any], enabled: bool
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns (destination, created)."""
        self._not_file(customer, dest_id)
        old = await self.store.get_destination(customer, dest_id)
        merged = merge_masked(type_, config, old.config if old and old.type == type_ else None)
        return await self._store(customer, dest_id, type_, merged, enabled)

    async def delete(self, customer: str, dest_id: str) -> None:
        if dest_id not in await self.effective(customer):
            raise NotFound(f"destination {dest_id!r} not found")
        self._not_file(customer, dest_id)
        if self._referenced(customer, dest_id):
            raise Conflict(
                f"destination {dest_id!r} is used by the routing rules; change them first"
            )
        await self.store.delete_destination(customer, dest_id)
        await self.topology.refresh()

    async def _store(
        self, customer: str, dest_id: str, type_: str, config: dict[str, Any], enabled: bool
    ) -> tuple[dict[str, Any], bool]:
        registry.validate_config(type_, config)  # ConfigError: nothing stored
        stored, created = await self.store.put_destination(
            customer, dest_id, type_, config, enabled
        )
        await self.topology.refresh()
        spec = DestinationSpec.model_construct(
            id=dest_id, type=type_, config=config, enabled=enabled
        )
        return _out(spec, "api", stored), created

    def _not_file(self, customer: str, dest_id: str) -> None:
        if dest_id in self.topology.file_destination_ids(customer):
            raise Conflict(f"destination {dest_id!r} is declared in the config file (GitOps)")

    def _referenced(self, customer: str, dest_id: str) -> bool:
        cust = self.topology.customers.get(customer)
        if cust is None:
            return False
        routing = cust.routing or {}
        used = set(routing.get("defaultDestinations", []))
        for rule in routing.get("rules", []):
            used.update(rule.get("actions", {}).get("destinations", []))
        return dest_id in used
