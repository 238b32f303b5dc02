"""Window counts: per cluster, its crashes in each time window of the cluster list and in the
window before (``cluster_windows``), up to the day in ``window_state``. Empty at first: the
first reader of each window builds them from ``cluster_days`` (see :mod:`store.windows`).

Revision ID: 0006_windows
Revises: 0005_arch
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_windows"
down_revision = "0005_arch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_windows",
        sa.Column("days", sa.Integer, primary_key=True),
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
        sa.Column("cur", sa.Integer, nullable=False),
        sa.Column("prev", sa.Integer, nullable=False),
    )
    op.create_index("ix_cluster_windows_cur", "cluster_windows", ["days", "cur"])
    op.create_table(
        "window_state",
        sa.Column("days", sa.Integer, primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("window_state")
    op.drop_index("ix_cluster_windows_cur", "cluster_windows")
    op.drop_table("cluster_windows")
