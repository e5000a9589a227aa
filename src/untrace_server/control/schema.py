"""The control-plane tables (SQLAlchemy Core), shared by SQLite and PostgreSQL: the one
description the queries use. The database gets them from the Alembic revisions in
``control/migrations``; a change here needs a new revision there (a test compares a
migrated database with this metadata)."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "api_keys",
    "changes",
    "customers",
    "destinations",
    "metadata",
    "replay_jobs",
    "routing_versions",
]

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
    sa.Column("requests_per_s", sa.Integer),
    sa.Column("traces_per_s", sa.Integer),
    sa.Column("ip_allowlist", sa.Text),  # JSON list of CIDRs
)


destinations = sa.Table(
    "destinations",
    metadata,
    sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # JSON (secrets encrypted by issue 8)
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

routing_versions = sa.Table(
    "routing_versions",
    metadata,
    sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("document", sa.Text, nullable=False),  # JSON routing document (DESIGN §7)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False, default=""),
    sa.Column("comment", sa.String(500), nullable=False, default=""),
)

# Backfill jobs (POST /api/v1/replay): the node running one writes its progress here, so
# any node of a fleet answers GET /api/v1/replay/{id}.
replay_jobs = sa.Table(
    "replay_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("job", sa.Text, nullable=False),  # JSON: destination, range, state, counts
    sa.Column("updated_at", sa.Float, nullable=False),
)

# One row per customer and kind ("destinations", "routing"): bumped on every change, so
# every node notices a change with one cheap query.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
