"""The control-plane store: customers and API keys (SQLAlchemy 2 async; SQLite by
default, PostgreSQL with ``UNTRACE_DATABASE_URL=postgresql://…``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from untrace_server.control.keys import ApiKey, hash_key, key_prefix
from untrace_server.errors import ConfigError

__all__ = ["ControlStore", "async_url"]

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, index=True),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
)


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
    )


class ControlStore:
    def __init__(self, url: str, secret: bytes) -> None:
        self.url = url
        self._secret = secret
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ControlStore.start() was not called")
        return self._engine

    async def start(self) -> None:
        if self._engine is not None:
            return
        if self.url.startswith("sqlite:///"):
            from pathlib import Path

            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(async_url(self.url))
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def ensure_customer(self, customer_id: str) -> None:
        async with self.engine.begin() as conn:
            found = await conn.scalar(sa.select(customers.c.id).where(customers.c.id == customer_id))
            if found is None:
                await conn.execute(customers.insert().values(id=customer_id, created_at=time.time()))

    async def add_key(
        self,
        key: str,
        *,
        customer_id: str,
        scopes: Iterable[str],
        name: str = "",
        expires_at: float | None = None,
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
                "metadata": "{}",
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

    async def touch_keys(self, used: dict[str, float]) -> None:
        """Write last-used times lazily, in one statement per flush."""
        if not used:
            return
        async with self.engine.begin() as conn:
            for key_id, when in used.items():
                await conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=when)
                )
