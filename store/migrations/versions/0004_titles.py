"""Crash titles: ``title`` on crashes and clusters, the cluster's alternative titles (the extra
join rule) and each crash's signature explanation (JSON).

Revision ID: 0004_titles
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_titles"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("title", sa.String(160)))
        batch.add_column(sa.Column("alt_titles", sa.Text))
    with op.batch_alter_table("crashes") as batch:
        batch.add_column(sa.Column("title", sa.String(160)))
        batch.add_column(sa.Column("explanation", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("crashes") as batch:
        batch.drop_column("explanation")
        batch.drop_column("title")
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("alt_titles")
        batch.drop_column("title")
