"""The control-plane store: customers, API keys, managed destinations and versioned
routing documents (SQLAlchemy 2 async; SQLite by default, PostgreSQL with
``UNTRACE_DATABASE_URL=postgresql://…``). Its tables are ``schema.py``; ``start`` brings
the database to the newest Alembic revision (``migrations``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from untrace_server.config import Settings
from untrace_server.control import migrations
from untrace_server.control.crypto import Keyring, load_keyring
from untrace_server.control.keys import ApiKey, hash_key, key_prefix, load_server_secret
from untrace_server.control.schema import (
    api_keys,
    changes,
    customers,
    destinations,
    replay_jobs,
    routing_versions,
)
from untrace_server.control.secrets import decrypt_config, encrypt_config, rewrap_config
from untrace_server.errors import ConfigError

__all__ = ["ControlStore", "RoutingVersion", "StoredDestination", "async_url"]


def async_url(url: str) -> str:
    """Map a plain database URL to its async driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url.removeprefix(plain)
    if "+" in url.split("://", 1)[0]:
        return url
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")


@dataclass(frozen=True)
class StoredDestination:
    customer_id: str
    id: str
    type: str
    config: dict[str, Any]
    enabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RoutingVersion:
    customer_id: str
    version: int
    document: dict[str, Any]
    created_at: float
    created_by: str
    comment: str


def _row_to_routing(r: sa.Row[Any]) -> RoutingVersion:
    return RoutingVersion(
        r.customer_id, r.version, json.loads(r.document), r.created_at, r.created_by, r.comment
    )


def _row_to_key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        customer_id=m["customer_id"],
        prefix=m["prefix"],
        scopes=frozenset(s for s in m["scopes"].split(",") if s),
        name=m["name"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        metadata=json.loads(m["metadata"] or "{}"),
        last_used_at=m["last_used_at"],
        requests_per_s=m["requests_per_s"],
        traces_per_s=m["traces_per_s"],
        ip_allowlist=tuple(json.loads(m["ip_allowlist"] or "[]")),
    )


class ControlStore:
    @classmethod
    def from_settings(cls, settings: Settings, keyring: Keyring | None = None) -> ControlStore:
        """The store the settings name, with the server secret and the master keyring
        (each generated into the data dir on first use when not configured)."""
        if keyring is None:
            keyring = load_keyring(
                settings.master_key, settings.security.previous_master_keys, settings.data_dir
            )
        secret = load_server_secret(settings.secret_key, settings.data_dir)
        return cls(settings.effective_database_url, secret, keyring)

    def __init__(self, url: str, secret: bytes, keyring: Keyring | None = None) -> None:
        self.url = url
        self._secret = secret
        # With a keyring, destination secrets are encrypted on write and decrypted on read.
        self.keyring = keyring
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ControlStore.start() was not called")
        return self._engine

    async def start(self) -> None:
        """Open the database and migrate it to the newest revision (creating a new store,
        adopting one made before migrations existed; nodes starting together take turns)."""
        if self._engine is not None:
            return
        if self.url.startswith("sqlite:///"):
            from pathlib import Path

            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(async_url(self.url))
        try:
            async with self._engine.begin() as conn:  # one transaction: all or nothing
                await conn.run_sync(migrations.upgrade)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def ensure_customer(self, customer_id: str) -> None:
        async with self.engine.begin() as conn:
            found = await conn.scalar(
                sa.select(customers.c.id).where(customers.c.id == customer_id)
            )
        if found is not None:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    customers.insert().values(id=customer_id, created_at=time.time())
                )
        except sa.exc.IntegrityError:
            pass  # another node (or request) created it between the two statements

    async def add_key(
        self,
        key: str,
        *,
        customer_id: str,
        scopes: Iterable[str],
        name: str = "",
        expires_at: float | None = None,
        metadata: dict[str, str] | None = None,
        requests_per_s: int | None = None,
        traces_per_s: int | None = None,
        ip_allowlist: Iterable[str] = (),
    ) -> ApiKey:
        """Register ``key`` (idempotent: an existing key with the same hash is returned)."""
        await self.ensure_customer(customer_id)
        digest = hash_key(self._secret, key)
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.hash == digest))).first()
            if row is not None:
                return _row_to_key(row)
            values = {
                "id": str(uuid.uuid4()),
                "customer_id": customer_id,
                "prefix": key_prefix(key),
                "hash": digest,
                "scopes": ",".join(sorted(set(scopes))),
                "name": name,
                "created_at": time.time(),
                "expires_at": expires_at,
                "metadata": json.dumps(metadata or {}),
                "requests_per_s": requests_per_s,
                "traces_per_s": traces_per_s,
                "ip_allowlist": json.dumps(list(ip_allowlist)),
            }
            await conn.execute(api_keys.insert().values(**values))
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.hash == digest))).one()
            return _row_to_key(row)

    async def find_key(self, key: str) -> ApiKey | None:
        digest = hash_key(self._secret, key)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys).where(
                        api_keys.c.prefix == key_prefix(key), api_keys.c.hash == digest
                    )
                )
            ).first()
        return None if row is None else _row_to_key(row)

    async def list_keys(self, customer_id: str | None = None) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at)
        if customer_id is not None:
            query = query.where(api_keys.c.customer_id == customer_id)
        async with self.engine.connect() as conn:
            return [_row_to_key(r) for r in (await conn.execute(query)).all()]

    async def revoke_key(self, key_id: str, customer_id: str | None = None) -> bool:
        query = api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        if customer_id is not None:
            query = query.where(api_keys.c.customer_id == customer_id)
        async with self.engine.begin() as conn:
            result = await conn.execute(query.values(revoked_at=time.time()))
        return bool(result.rowcount)

    # -- managed destinations and routing versions ---------------------------------

    async def _changed(self, conn: Any, customer_id: str, kind: str) -> None:
        await conn.execute(
            changes.insert().values(customer_id=customer_id, kind=kind, at=time.time())
        )

    async def change_seq(self) -> int:
        """A number that grows whenever a destination or routing document changes."""
        async with self.engine.connect() as conn:
            seq = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(changes.c.seq), 0)))
            return int(seq or 0)

    async def get_key(self, key_id: str, customer_id: str | None = None) -> ApiKey | None:
        query = sa.select(api_keys).where(api_keys.c.id == key_id)
        if customer_id is not None:
            query = query.where(api_keys.c.customer_id == customer_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _row_to_key(row)

    async def expire_key(self, key_id: str, at: float) -> None:
        """Make a key expire at ``at`` (earlier than it would have); rotation's overlap."""
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.update()
                .where(
                    api_keys.c.id == key_id,
                    sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > at),
                )
                .values(expires_at=at)
            )

    async def customer_exists(self, customer_id: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(customers.c.id).where(customers.c.id == customer_id)
            )
        return found is not None

    async def rewrap_secrets(self) -> int:
        """Re-wrap every destination secret under the keyring's current master key."""
        if self.keyring is None:
            return 0
        count = 0
        for d in await self.list_destinations(decrypt=False):
            config = rewrap_config(self.keyring, d.type, d.config)
            if config != d.config:
                key = (destinations.c.customer_id == d.customer_id) & (destinations.c.id == d.id)
                async with self.engine.begin() as conn:
                    await conn.execute(
                        destinations.update().where(key).values(config=json.dumps(config))
                    )
                count += 1
        return count

    async def list_destinations(
        self, customer_id: str | None = None, *, decrypt: bool = True
    ) -> list[StoredDestination]:
        query = sa.select(destinations).order_by(destinations.c.customer_id, destinations.c.id)
        if customer_id is not None:
            query = query.where(destinations.c.customer_id == customer_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            StoredDestination(
                r.customer_id,
                r.id,
                r.type,
                self._open_config(r.type, json.loads(r.config), decrypt),
                r.enabled,
                r.created_at,
                r.updated_at,
            )
            for r in rows
        ]

    def _open_config(self, type_: str, config: dict[str, Any], decrypt: bool) -> dict[str, Any]:
        if decrypt and self.keyring is not None:
            return decrypt_config(self.keyring, type_, config)
        return config

    async def get_destination(
        self, customer_id: str, destination_id: str
    ) -> StoredDestination | None:
        found = [d for d in await self.list_destinations(customer_id) if d.id == destination_id]
        return found[0] if found else None

    async def put_destination(
        self,
        customer_id: str,
        destination_id: str,
        type_: str,
        config: dict[str, Any],
        enabled: bool = True,
    ) -> tuple[StoredDestination, bool]:
        """Create or replace; returns (destination, created)."""
        await self.ensure_customer(customer_id)
        now = time.time()
        key = (destinations.c.customer_id == customer_id) & (destinations.c.id == destination_id)
        async with self.engine.begin() as conn:
            existing = (await conn.execute(sa.select(destinations.c.created_at).where(key))).first()
            values = {
                "type": type_,
                "config": json.dumps(
                    encrypt_config(self.keyring, type_, config) if self.keyring else config
                ),
                "enabled": enabled,
                "updated_at": now,
            }
            if existing is None:
                await conn.execute(
                    destinations.insert().values(
                        customer_id=customer_id, id=destination_id, created_at=now, **values
                    )
                )
            else:
                await conn.execute(destinations.update().where(key).values(**values))
            await self._changed(conn, customer_id, "destinations")
        created_at = now if existing is None else existing[0]
        return (
            StoredDestination(customer_id, destination_id, type_, config, enabled, created_at, now),
            existing is None,
        )

    async def delete_destination(self, customer_id: str, destination_id: str) -> bool:
        key = (destinations.c.customer_id == customer_id) & (destinations.c.id == destination_id)
        async with self.engine.begin() as conn:
            result = await conn.execute(destinations.delete().where(key))
            if result.rowcount:
                await self._changed(conn, customer_id, "destinations")
        return bool(result.rowcount)

    async def put_routing(
        self, customer_id: str, document: dict[str, Any], created_by: str = "", comment: str = ""
    ) -> int:
        """Store a new version of a customer's routing document; returns its number."""
        await self.ensure_customer(customer_id)
        async with self.engine.begin() as conn:
            current = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.max(routing_versions.c.version), 0)).where(
                    routing_versions.c.customer_id == customer_id
                )
            )
            version = int(current or 0) + 1
            await conn.execute(
                routing_versions.insert().values(
                    customer_id=customer_id,
                    version=version,
                    document=json.dumps(document),
                    created_at=time.time(),
                    created_by=created_by,
                    comment=comment,
                )
            )
            await self._changed(conn, customer_id, "routing")
        return version

    async def routing_history(self, customer_id: str) -> list[RoutingVersion]:
        query = (
            sa.select(routing_versions)
            .where(routing_versions.c.customer_id == customer_id)
            .order_by(routing_versions.c.version.desc())
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_routing(r) for r in rows]

    async def latest_routing(self) -> dict[str, RoutingVersion]:
        """The newest routing version of every customer that has one."""
        newest = (
            sa.select(
                routing_versions.c.customer_id, sa.func.max(routing_versions.c.version).label("v")
            )
            .group_by(routing_versions.c.customer_id)
            .subquery()
        )
        query = sa.select(routing_versions).join(
            newest,
            (routing_versions.c.customer_id == newest.c.customer_id)
            & (routing_versions.c.version == newest.c.v),
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.customer_id: _row_to_routing(r) for r in rows}

    async def touch_keys(self, used: dict[str, float]) -> None:
        """Write last-used times lazily, in one statement per flush."""
        if not used:
            return
        async with self.engine.begin() as conn:
            for key_id, when in used.items():
                await conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=when)
                )

    async def save_replay_job(self, customer_id: str, job_id: str, job: dict[str, Any]) -> None:
        """Insert or update a backfill job's record (its state and counts)."""
        values = {"job": json.dumps(job), "updated_at": time.time()}
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                replay_jobs.update()
                .where(replay_jobs.c.id == job_id, replay_jobs.c.customer_id == customer_id)
                .values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    replay_jobs.insert().values(id=job_id, customer_id=customer_id, **values)
                )

    async def list_replay_jobs(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A customer's backfill jobs, the most recently written first."""
        query = (
            sa.select(replay_jobs.c.job, replay_jobs.c.updated_at)
            .where(replay_jobs.c.customer_id == customer_id)
            .order_by(replay_jobs.c.updated_at.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [{**json.loads(r.job), "updated_at": r.updated_at} for r in rows]

    async def get_replay_job(
        self, customer_id: str, job_id: str
    ) -> tuple[dict[str, Any], float] | None:
        """A customer's backfill job and when it was last written, or None."""
        query = sa.select(replay_jobs.c.job, replay_jobs.c.updated_at).where(
            replay_jobs.c.id == job_id, replay_jobs.c.customer_id == customer_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (json.loads(row.job), row.updated_at)
