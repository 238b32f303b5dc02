"""Dead letters marked as replayed and resolved: ``failures.replayed_at`` and ``replays``
(crashfleet dlq replay), ``resolved_at`` (the event was stored later).

Revision ID: 0006_faults2
Revises: 0006_windows
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_faults2"
down_revision = "0006_windows"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("failures") as batch:
        batch.add_column(sa.Column("replayed_at", TS, nullable=True))
        batch.add_column(sa.Column("replays", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("resolved_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("failures") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("replays")
        batch.drop_column("replayed_at")
