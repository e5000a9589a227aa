"""Schema migrations of the control-plane store (Alembic), shipped in the package and run
from code: no ``alembic.ini``. ``ControlStore.start`` calls :func:`upgrade`, so every
node brings its database to the newest revision before it serves.

A new revision, after changing ``schema.py`` (autogenerate compares against it)::

    import sqlalchemy as sa
    from alembic import command
    from untrace_server.control import migrations

    with sa.create_engine("sqlite:///scratch.db").begin() as conn:
        migrations.upgrade(conn)
        command.revision(
            migrations.alembic_config(conn), "what changed", autogenerate=True, rev_id="0002"
        )

then read the generated file in ``versions/``, fix what autogenerate cannot know (data
moves, renames, defaults for existing rows) and ``ruff format`` it."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger("untrace.control")

SCRIPT_LOCATION = Path(__file__).parent
# A fixed number shared by every node (the bytes of "untrace"): the PostgreSQL advisory
# lock that lets one node migrate while the others starting with it wait.
PG_LOCK_KEY = 0x756E7472616365


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration, built in code; ``env.py`` migrates ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory holds no revision"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision a database is at (None: new, or made before migrations existed)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: sa.Connection) -> None:
    """Bring the database to the newest revision inside the caller's transaction
    (``engine.begin()``; async engines through ``conn.run_sync``), holding a lock so that
    nodes starting together migrate one after the other: the first upgrades, the others
    then find the database at head and do nothing.

    A store created before migrations existed (tables, no ``alembic_version``) is adopted
    by revision 0001, which adds only what it lacks."""
    _lock(connection)
    before = current_revision(connection)
    command.upgrade(alembic_config(connection), "head")
    after = current_revision(connection)
    if after != before:
        log.info("control store migrated from %s to %s", before or "no revision", after)


def _lock(connection: sa.Connection) -> None:
    """Serialise migrations across processes, until the transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_LOCK_KEY)))
    elif connection.dialect.name == "sqlite":
        # The write lock now, not at the first write: a second process waits here
        # (the driver's busy timeout) instead of reading a schema that is being changed.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
