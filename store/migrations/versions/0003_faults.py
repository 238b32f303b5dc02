"""Crash history: one row per re-analysis of a stored crash (crashfleet reanalyze).

Revision ID: 0003_faults
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_faults"
down_revision = "0002_web"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crash_history",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("crashes.event_id"),
                  primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("old_signature_id", sa.String(32), nullable=False),
        sa.Column("old_cluster_id", sa.String(32), nullable=False),
        sa.Column("new_signature_id", sa.String(32), nullable=False),
        sa.Column("new_cluster_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_crashes_build_id", "crashes", ["build_id"])


def downgrade() -> None:
    op.drop_index("ix_crashes_build_id", "crashes")
    op.drop_table("crash_history")
