"""The architecture facet: ``arch`` on crashes (x86_64 or arm64, from the report) and the
per-cluster ``cluster_arches`` aggregate, kept like the kernel, host, taint and module ones.

Backfill: the crashes table does not hold the report, and the migration does not read the
object store; a crash whose kernel release names arm64 (``…-arm64``, ``…aarch64``) becomes
arm64, every other one x86_64 (the only architecture analyzed before arm64 support).

Revision ID: 0005_arch
Revises: 0003_faults
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_arch"
down_revision = "0003_faults"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("crashes") as batch:
        batch.add_column(sa.Column("arch", sa.String(16), nullable=False,
                                   server_default="x86_64"))
    op.create_table(
        "cluster_arches",
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
        sa.Column("arch", sa.String(16), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_index("ix_cluster_arches_arch", "cluster_arches", ["arch", "cluster_id"])
    op.create_index("ix_cluster_arches_top", "cluster_arches", ["cluster_id", "count"])
    _backfill()


def _backfill() -> None:
    """Set the arch of the crashes stored before this revision and count them per cluster,
    as the write path would have (one INSERT … SELECT: no rows through Python)."""
    conn = op.get_bind()
    meta = sa.MetaData()
    crashes = sa.Table("crashes", meta, autoload_with=conn)
    arches = sa.Table("cluster_arches", meta, autoload_with=conn)
    release = sa.func.lower(sa.func.coalesce(crashes.c.kernel_release, ""))
    conn.execute(sa.update(crashes).where(sa.or_(release.like("%arm64%"),
                                                 release.like("%aarch64%")))
                 .values(arch="arm64"))
    seen = sa.func.coalesce(crashes.c.crash_time, crashes.c.analyzed_at)
    conn.execute(arches.insert().from_select(
        ["cluster_id", "arch", "count", "first_seen", "last_seen"],
        sa.select(crashes.c.cluster_id, crashes.c.arch, sa.func.count(), sa.func.min(seen),
                  sa.func.max(seen)).group_by(crashes.c.cluster_id, crashes.c.arch)))


def downgrade() -> None:
    op.drop_index("ix_cluster_arches_top", "cluster_arches")
    op.drop_index("ix_cluster_arches_arch", "cluster_arches")
    op.drop_table("cluster_arches")
    with op.batch_alter_table("crashes") as batch:
        batch.drop_column("arch")
