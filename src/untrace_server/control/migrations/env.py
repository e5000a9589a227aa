"""Alembic's environment: run by ``untrace_server.control.migrations`` with the
connection to migrate in ``config.attributes["connection"]`` (online only)."""

from __future__ import annotations

from alembic import context

from untrace_server.control.schema import metadata

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "run control-store migrations through untrace_server.control.migrations.upgrade "
        "(they need a live connection)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it: later revisions use op.batch_alter_table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():  # inside the caller's transaction: a no-op
    context.run_migrations()
