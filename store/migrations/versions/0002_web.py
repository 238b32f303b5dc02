"""Web read model: per-cluster aggregates (by day, kernel, host, taint set, module), triage
state, and indexes for the web UI's filters; existing crashes are counted in.

Revision ID: 0002_web
Revises: 0004_titles
"""

from __future__ import annotations

import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0002_web"
down_revision = "0004_titles"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_FACETS = (("cluster_kernels", "kernel", 128), ("cluster_hosts", "host", 255),
           ("cluster_taints", "taint", 32), ("cluster_modules", "module", 128))


def upgrade() -> None:
    op.create_table(
        "cluster_days",
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_cluster_days_day", "cluster_days", ["day", "cluster_id"])
    for name, column, length in _FACETS:
        op.create_table(
            name,
            sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"),
                      primary_key=True),
            sa.Column(column, sa.String(length), primary_key=True),
            sa.Column("count", sa.Integer, nullable=False),
            sa.Column("first_seen", TS, nullable=False),
            sa.Column("last_seen", TS, nullable=False),
        )
        op.create_index(f"ix_{name}_{column}", name, [column, "cluster_id"])
        op.create_index(f"ix_{name}_top", name, ["cluster_id", "count"])
    op.create_table(
        "kernel_counts",
        sa.Column("kernel", sa.String(128), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("hosts", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "triage",
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fixed_in", sa.String(128)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("regressed_at", TS),
        sa.Column("regressed_kernel", sa.String(128)),
    )
    op.create_index("ix_triage_state", "triage", ["state"])
    op.create_index("ix_crashes_host_time", "crashes", ["host", "analyzed_at"])
    op.create_index("ix_crashes_cluster_time", "crashes", ["cluster_id", "analyzed_at"])
    op.create_index("ix_clusters_last_seen", "clusters", ["last_seen"])
    op.create_index("ix_clusters_first_seen", "clusters", ["first_seen"])
    op.create_index("ix_clusters_count", "clusters", ["count"])
    _backfill()


def _backfill() -> None:
    """Count the crashes stored before this revision, as the write path would have."""
    from store.aggregates import findings_json, modules_of

    conn = op.get_bind()
    meta = sa.MetaData()  # reflected: the tables as this revision left them
    crashes = sa.Table("crashes", meta, autoload_with=conn)
    clusters = sa.Table("clusters", meta, autoload_with=conn)
    frames = {cid: json.loads(f) for cid, f in
              conn.execute(sa.select(clusters.c.id, clusters.c.frames))}
    days: dict[tuple[str, object], int] = {}
    facets: dict[str, dict[tuple[str, str], list]] = {name: {} for name, _, _ in _FACETS}
    for r in conn.execute(sa.select(crashes.c.cluster_id, crashes.c.crash_time,
                                    crashes.c.analyzed_at, crashes.c.kernel_release,
                                    crashes.c.host, crashes.c.taint, crashes.c.findings)):
        seen = r.crash_time or r.analyzed_at
        seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        days[(r.cluster_id, seen.date())] = days.get((r.cluster_id, seen.date()), 0) + 1
        keys = {"cluster_kernels": [(r.kernel_release or "unknown")[:128]],
                "cluster_hosts": [r.host[:255]], "cluster_taints": [r.taint[:32]],
                "cluster_modules": modules_of(frames.get(r.cluster_id, ()),
                                              findings_json(r.findings))}
        for name, values in keys.items():
            for v in values:
                cur = facets[name].setdefault((r.cluster_id, v), [0, seen, seen])
                cur[0] += 1
                cur[1], cur[2] = min(cur[1], seen), max(cur[2], seen)
    table = sa.table("cluster_days", sa.column("cluster_id"), sa.column("day"),
                     sa.column("count"))
    if days:
        conn.execute(table.insert(), [{"cluster_id": c, "day": d, "count": n}
                                      for (c, d), n in days.items()])
    kernels: dict[str, int] = {}
    for (_c, k), (n, _a, _b) in facets["cluster_kernels"].items():
        kernels[k] = kernels.get(k, 0) + n
    if kernels:
        t = sa.table("kernel_counts", sa.column("kernel"), sa.column("count"))
        conn.execute(t.insert(), [{"kernel": k, "count": n} for k, n in kernels.items()])
    hosts: dict[str, int] = {}
    for c, _h in facets["cluster_hosts"]:
        hosts[c] = hosts.get(c, 0) + 1
    for c, n in hosts.items():
        conn.execute(sa.update(clusters).where(clusters.c.id == c).values(hosts=n))
    for name, column, _ in _FACETS:
        if facets[name]:
            t = sa.table(name, sa.column("cluster_id"), sa.column(column), sa.column("count"),
                         sa.column("first_seen", TS), sa.column("last_seen", TS))
            conn.execute(t.insert(), [{"cluster_id": c, column: v, "count": n,
                                       "first_seen": a, "last_seen": b}
                                      for (c, v), (n, a, b) in facets[name].items()])


def downgrade() -> None:
    for name in ("ix_clusters_count", "ix_clusters_first_seen", "ix_clusters_last_seen"):
        op.drop_index(name, "clusters")
    op.drop_index("ix_crashes_cluster_time", "crashes")
    op.drop_index("ix_crashes_host_time", "crashes")
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("hosts")
    for table in ("kernel_counts", "triage", "cluster_modules", "cluster_taints", "cluster_hosts",
                  "cluster_kernels", "cluster_days"):
        op.drop_table(table)
