"""Initial crash store: clusters, signatures, crashes, taint sets, failures.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("signature_text", sa.String(300), nullable=False),
        sa.Column("panic_class", sa.String(64), nullable=False),
        sa.Column("taint", sa.String(32), nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("frames", sa.Text, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "signatures",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("text", sa.String(300), nullable=False),
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "crashes",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("machine_id", sa.String(64), nullable=False),
        sa.Column("kernel_release", sa.String(128)),
        sa.Column("build_id", sa.String(64)),
        sa.Column("crash_time", TS),
        sa.Column("analyzed_at", TS, nullable=False),
        sa.Column("dump_key", sa.String(512)),
        sa.Column("report_key", sa.String(512)),
        sa.Column("signature_id", sa.String(32), sa.ForeignKey("signatures.id"),
                  nullable=False),
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), nullable=False),
        sa.Column("panic_class", sa.String(64), nullable=False),
        sa.Column("taint", sa.String(32), nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("partial", sa.Boolean, nullable=False),
    )
    op.create_index("ix_crashes_cluster", "crashes", ["cluster_id"])
    op.create_index("ix_crashes_analyzed_at", "crashes", ["analyzed_at"])
    op.create_table(
        "taint_sets",
        sa.Column("letters", sa.String(32), primary_key=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("first_event_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "failures",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("dead_lettered", sa.Boolean, nullable=False),
        sa.Column("last_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("failures", "taint_sets", "crashes", "signatures", "clusters"):
        op.drop_table(table)
