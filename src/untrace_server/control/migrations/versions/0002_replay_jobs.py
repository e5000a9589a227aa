"""Backfill jobs kept in the store, so every node of a fleet can show their progress.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_replay_jobs_customer_id"), "replay_jobs", ["customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_replay_jobs_customer_id"), table_name="replay_jobs")
    op.drop_table("replay_jobs")
