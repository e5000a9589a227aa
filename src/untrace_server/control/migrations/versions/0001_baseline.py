"""The control-plane schema as of the switch to Alembic.

A store made before then, by ``metadata.create_all``, already holds some of these tables,
built from the same definitions, and lacks what later versions added: the first release
had only ``customers`` and ``api_keys``, and ``api_keys`` gained ``requests_per_s``,
``traces_per_s`` and ``ip_allowlist`` afterwards. This revision creates only what is
missing, so such a store is adopted with its data and stamped 0001; a new store gets
everything.

Revision ID: 0001
Revises:
Create Date: 2026-11-29"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _later_api_key_columns() -> list[sa.Column[object]]:
    """The api_keys columns a store made by an earlier version may lack."""
    return [
        sa.Column("requests_per_s", sa.Integer(), nullable=True),
        sa.Column("traces_per_s", sa.Integer(), nullable=True),
        sa.Column("ip_allowlist", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())

    if "customers" not in existing:
        op.create_table(
            "customers",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )

    if "api_keys" not in existing:
        op.create_table(
            "api_keys",
            sa.Column("id", sa.String(length=36), nullable=False),
            sa.Column("customer_id", sa.String(length=64), nullable=False),
            sa.Column("prefix", sa.String(length=32), nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.Column("scopes", sa.String(length=200), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=True),
            sa.Column("revoked_at", sa.Float(), nullable=True),
            sa.Column("last_used_at", sa.Float(), nullable=True),
            sa.Column("metadata", sa.Text(), nullable=False),
            *_later_api_key_columns(),
            sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("hash"),
        )
        op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"], unique=False)
    else:
        present = {c["name"] for c in inspector.get_columns("api_keys")}
        for column in _later_api_key_columns():
            if column.name not in present:
                op.add_column("api_keys", column)  # nullable: SQLite adds it in place

    if "destinations" not in existing:
        op.create_table(
            "destinations",
            sa.Column("customer_id", sa.String(length=64), nullable=False),
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("type", sa.String(length=64), nullable=False),
            sa.Column("config", sa.Text(), nullable=False),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
            sa.PrimaryKeyConstraint("customer_id", "id"),
        )

    if "routing_versions" not in existing:
        op.create_table(
            "routing_versions",
            sa.Column("customer_id", sa.String(length=64), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("document", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("created_by", sa.String(length=200), nullable=False),
            sa.Column("comment", sa.String(length=500), nullable=False),
            sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
            sa.PrimaryKeyConstraint("customer_id", "version"),
        )

    if "changes" not in existing:
        op.create_table(
            "changes",
            sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("customer_id", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=32), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
        )


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_table("routing_versions")
    op.drop_table("destinations")
    op.drop_index(op.f("ix_api_keys_prefix"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("customers")
