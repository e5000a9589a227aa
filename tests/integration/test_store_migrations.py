"""The control store migrates itself with Alembic, on SQLite files and on a real
PostgreSQL (a fresh database per test, dropped after): a new store is created at head and
matches ``schema.py`` exactly; a store made by an earlier Untrace (``create_all``, no
``alembic_version``) is adopted with its data; nodes starting together migrate once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.conftest import require_service

from untrace_server.control import migrations
from untrace_server.control.keys import hash_key, key_prefix
from untrace_server.control.schema import metadata
from untrace_server.control.store import ControlStore, async_url

PG = "postgresql://postgres@127.0.0.1:5432"
SECRET = b"migration-test-secret"
KEY = "utk_legacy_0123456789abcdef"


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A new, uniquely named PostgreSQL database, dropped afterwards."""
    name = f"untrace_migrations_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(f"{PG}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL at 127.0.0.1:5432 ({exc})")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{PG}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'control.db'}"
    else:
        async with pg_database() as url:
            yield url


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(async_url(url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def inspect_db(url: str) -> dict[str, Any]:
    """What is in the database: revision, tables, columns, and its differences from
    ``schema.metadata`` as Alembic's autogenerate sees them."""

    def look(conn: sa.Connection) -> dict[str, Any]:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        return {
            "revision": migrations.current_revision(conn),
            "versions": conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            if "alembic_version" in tables
            else [],
            "tables": tables - {"alembic_version"},
            "api_keys": {c["name"] for c in inspector.get_columns("api_keys")},
            "diff": compare_metadata(MigrationContext.configure(conn), metadata),
        }

    async with engine_for(url) as engine, engine.connect() as conn:
        return await conn.run_sync(look)


async def table_names(url: str) -> set[str]:
    async with engine_for(url) as engine, engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def started(url: str) -> ControlStore:
    store = ControlStore(url, SECRET)
    await store.start()
    return store


# -- a new store ---------------------------------------------------------------------


def test_one_linear_history_with_a_head() -> None:
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    assert scripts.get_heads() == [migrations.head_revision()]
    assert [s.revision for s in scripts.walk_revisions()][-1] == "0001"


async def test_new_store_is_created_at_head_and_works(db_url: str) -> None:
    store = await started(db_url)
    try:
        made = await store.add_key(
            KEY,
            customer_id="acme",
            scopes=["ingest"],
            requests_per_s=5,
            ip_allowlist=["10.0.0.0/8"],
        )
        await store.put_destination("acme", "hook", "webhook", {"url": "http://x"})
        assert await store.put_routing("acme", {"defaultDestinations": ["hook"]}) == 1
    finally:
        await store.close()

    seen = await inspect_db(db_url)
    assert seen["revision"] == migrations.head_revision()
    assert seen["tables"] == set(metadata.tables)
    assert seen["diff"] == []

    store = await started(db_url)  # a restart at head changes nothing and keeps the data
    try:
        found = await store.find_key(KEY)
        assert found is not None and found.id == made.id
        assert (found.requests_per_s, found.ip_allowlist) == (5, ("10.0.0.0/8",))
        assert [d.id for d in await store.list_destinations("acme")] == ["hook"]
    finally:
        await store.close()
    assert (await inspect_db(db_url))["versions"] == [(migrations.head_revision(),)]


async def test_migrated_database_matches_schema_py(db_url: str) -> None:
    """``alembic check``: a schema.py change without a revision fails here."""
    await (await started(db_url)).close()
    assert (await inspect_db(db_url))["diff"] == []

    # the comparison does see a change: schema.py with one more column than the database
    changed = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["api_keys"].append_column(sa.Column("team", sa.String(64)))
    async with engine_for(db_url) as engine, engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), changed)
        )
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "api_keys", "team")]


async def test_downgrade_to_base_and_back(db_url: str) -> None:
    await (await started(db_url)).close()
    async with engine_for(db_url) as engine, engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(migrations.alembic_config(c), "base"))
    assert await table_names(db_url) <= {"alembic_version"}
    await (await started(db_url)).close()
    assert (await inspect_db(db_url))["diff"] == []


# -- a store made by an earlier Untrace (create_all, no alembic_version) -------------


def legacy_metadata(release: str) -> sa.MetaData:
    """The tables as earlier versions defined them. ``first``: the first release
    (customers and api_keys only); ``routing``: with managed destinations, routing
    versions and the change log. Neither has the later api_keys columns."""
    old = sa.MetaData()
    sa.Table(
        "customers",
        old,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "api_keys",
        old,
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
    if release == "first":
        return old
    sa.Table(
        "destinations",
        old,
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, default=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    sa.Table(
        "routing_versions",
        old,
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False, default=""),
        sa.Column("comment", sa.String(500), nullable=False, default=""),
    )
    sa.Table(
        "changes",
        old,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    return old


async def make_legacy_store(url: str, release: str) -> None:
    """What the old ``ControlStore.start`` did (create_all), plus a customer, a key and,
    when the release had them, a destination and a routing version."""
    old = legacy_metadata(release)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    async with engine_for(url) as engine, engine.begin() as conn:
        await conn.run_sync(old.create_all)
        t = old.tables
        await conn.execute(t["customers"].insert().values(id="acme", created_at=now))
        await conn.execute(
            t["api_keys"]
            .insert()
            .values(
                id="key-1",
                customer_id="acme",
                prefix=key_prefix(KEY),
                hash=hash_key(SECRET, KEY),
                scopes="ingest,read",
                name="legacy",
                created_at=now,
                metadata=json.dumps({"team": "core"}),
            )
        )
        if release == "first":
            return
        await conn.execute(
            t["destinations"]
            .insert()
            .values(
                customer_id="acme",
                id="hook",
                type="webhook",
                config=json.dumps({"url": "http://legacy.example"}),
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            t["routing_versions"]
            .insert()
            .values(
                customer_id="acme",
                version=1,
                document=json.dumps({"defaultDestinations": ["hook"]}),
                created_at=now,
                created_by="ops",
                comment="",
            )
        )
        await conn.execute(
            t["changes"].insert().values(customer_id="acme", kind="destinations", at=now)
        )


@pytest.mark.parametrize("release", ["first", "routing"])
async def test_store_from_an_earlier_version_is_adopted_with_its_data(
    db_url: str, release: str
) -> None:
    await make_legacy_store(db_url, release)
    before = await table_names(db_url)
    assert "alembic_version" not in before and "api_keys" in before

    store = await started(db_url)
    try:
        key = await store.find_key(KEY)
        assert key is not None
        assert (key.id, key.customer_id, key.name, key.scopes, key.metadata) == (
            "key-1",
            "acme",
            "legacy",
            frozenset({"ingest", "read"}),
            {"team": "core"},
        )
        assert (key.requests_per_s, key.traces_per_s, key.ip_allowlist) == (None, None, ())
        # the added columns work, on the old key and on a new one
        await store.touch_keys({"key-1": 123.0})
        limited = await store.add_key(
            "utk_new_0123456789abcdef", customer_id="acme", scopes=["read"], traces_per_s=7
        )
        assert limited.traces_per_s == 7
        assert {k.id for k in await store.list_keys("acme")} == {"key-1", limited.id}

        seq = await store.change_seq()
        if release == "routing":
            [dest] = await store.list_destinations("acme")
            assert (dest.id, dest.type, dest.config) == (
                "hook",
                "webhook",
                {"url": "http://legacy.example"},
            )
            assert (await store.latest_routing())["acme"].document == {
                "defaultDestinations": ["hook"]
            }
            assert seq == 1
        else:
            assert await store.list_destinations() == [] and seq == 0
        await store.put_destination("acme", "second", "webhook", {"url": "http://new"})
        assert await store.put_routing("acme", {"defaultDestinations": ["second"]}) == (
            2 if release == "routing" else 1
        )
        assert await store.change_seq() == seq + 2
    finally:
        await store.close()

    seen = await inspect_db(db_url)
    assert seen["versions"] == [(migrations.head_revision(),)]
    assert seen["tables"] == set(metadata.tables)
    assert {"requests_per_s", "traces_per_s", "ip_allowlist"} <= seen["api_keys"]
    assert seen["diff"] == []  # adopted = identical to a store created new


# -- nodes starting together -----------------------------------------------------------


@pytest.mark.parametrize("existing", ["new", "legacy"])
async def test_nodes_starting_together_on_one_postgresql_migrate_once(existing: str) -> None:
    async with pg_database() as url:
        if existing == "legacy":
            await make_legacy_store(url, "routing")
        stores = [ControlStore(url, SECRET) for _ in range(6)]
        try:
            await asyncio.gather(*(store.start() for store in stores))
            # every node works against the one migrated schema
            await stores[0].ensure_customer("acme")
            await asyncio.gather(
                *(
                    store.add_key(f"utk_node{i}_0123456789abcdef", customer_id="acme", scopes=[])
                    for i, store in enumerate(stores)
                )
            )
            assert len(await stores[0].list_keys("acme")) == 6 + (existing == "legacy")
        finally:
            for store in stores:
                await store.close()
        seen = await inspect_db(url)
        assert seen["versions"] == [(migrations.head_revision(),)]
        assert seen["diff"] == []


async def test_nodes_starting_together_on_one_sqlite_file_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.db'}"
    stores = [ControlStore(url, SECRET) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
    finally:
        for store in stores:
            await store.close()
    seen = await inspect_db(url)
    assert seen["versions"] == [(migrations.head_revision(),)]
    assert seen["diff"] == []


@asynccontextmanager
async def migration_lock_held(url: str) -> AsyncIterator[None]:
    """Hold the lock a migrating node holds, from another connection."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        lite = sqlite3.connect(path, isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.rollback()
            lite.close()
    else:
        pg = await asyncpg.connect(url)
        try:
            await pg.execute("SELECT pg_advisory_lock($1)", migrations.PG_LOCK_KEY)
            yield
        finally:
            await pg.close()  # ends the session and its lock


async def test_start_waits_while_another_node_holds_the_migration_lock(db_url: str) -> None:
    store = ControlStore(db_url, SECRET)
    try:
        async with migration_lock_held(db_url):
            starting = asyncio.create_task(store.start())
            await asyncio.sleep(1.0)
            assert not starting.done(), "the start did not wait for the migration lock"
        await asyncio.wait_for(starting, 10)
        assert await store.find_key(KEY) is None  # started and usable
    finally:
        await store.close()
    assert (await inspect_db(db_url))["revision"] == migrations.head_revision()


async def test_first_keys_of_a_new_customer_added_at_once(db_url: str) -> None:
    """Two nodes (here: eight tasks on two stores) adding the first key of a brand-new
    customer at the same moment: every key is added, the customer once."""
    stores = [await started(db_url), await started(db_url)]
    try:
        await asyncio.gather(
            *(
                stores[i % 2].add_key(
                    f"utk_race_{i}_0123456789abcdef", customer_id="brand-new", scopes=["ingest"]
                )
                for i in range(8)
            )
        )
        keys = await stores[0].list_keys("brand-new")
        assert len(keys) == 8
    finally:
        for store in stores:
            await store.close()
