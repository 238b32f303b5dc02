"""The crash store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create
them; this module is the single description both the code and the migrations follow."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["cluster_arches", "cluster_days", "cluster_hosts", "cluster_kernels",
           "cluster_modules", "cluster_taints", "cluster_windows", "clusters", "crash_history",
           "crashes", "failures", "kernel_counts", "metadata", "signatures", "taint_sets",
           "triage", "window_state"]

metadata = sa.MetaData()

# Times are timezone-aware UTC timestamps.
_TS = sa.DateTime(timezone=True)

clusters = sa.Table(
    "clusters", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("signature_text", sa.String(300), nullable=False),  # first member's signature
    sa.Column("panic_class", sa.String(64), nullable=False),
    sa.Column("taint", sa.String(32), nullable=False),
    sa.Column("findings", sa.Text, nullable=False),  # JSON list of "kind(module)"
    sa.Column("frames", sa.Text, nullable=False),  # JSON list, for joining similar signatures
    sa.Column("first_seen", _TS, nullable=False),
    sa.Column("last_seen", _TS, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("title", sa.String(160)),  # first member's title (None: stored before titles)
    sa.Column("alt_titles", sa.Text),  # JSON list: the titles a new crash may join it by
    # Distinct hosts (0002_web): counted when a host's first crash in the cluster is stored.
    sa.Column("hosts", sa.Integer, nullable=False, server_default="0"),
)

signatures = sa.Table(
    "signatures", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("text", sa.String(300), nullable=False),
    sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), nullable=False),
    sa.Column("first_seen", _TS, nullable=False),
    sa.Column("last_seen", _TS, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)

crashes = sa.Table(
    "crashes", metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),  # unique: redelivery is a no-op
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("machine_id", sa.String(64), nullable=False),
    sa.Column("kernel_release", sa.String(128)),
    sa.Column("build_id", sa.String(64)),
    sa.Column("crash_time", _TS),
    sa.Column("analyzed_at", _TS, nullable=False),
    sa.Column("dump_key", sa.String(512)),
    sa.Column("report_key", sa.String(512)),
    sa.Column("signature_id", sa.String(32), sa.ForeignKey("signatures.id"), nullable=False),
    sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), nullable=False),
    sa.Column("panic_class", sa.String(64), nullable=False),
    sa.Column("taint", sa.String(32), nullable=False),
    sa.Column("findings", sa.Text, nullable=False),  # JSON list of {"kind", "module"}
    sa.Column("partial", sa.Boolean, nullable=False),
    sa.Column("title", sa.String(160)),
    sa.Column("explanation", sa.Text),  # JSON: how the signature and title were made
    # x86_64 or arm64 (0005_arch), from the report; "unknown" when the report could not tell
    sa.Column("arch", sa.String(16), nullable=False, server_default="x86_64"),
    sa.Index("ix_crashes_cluster", "cluster_id"),
    sa.Index("ix_crashes_analyzed_at", "analyzed_at"),
    sa.Index("ix_crashes_build_id", "build_id"),
)

# Every taint letter combination seen in the fleet, with the crash that first showed it.
taint_sets = sa.Table(
    "taint_sets", metadata,
    sa.Column("letters", sa.String(32), primary_key=True),
    sa.Column("first_seen", _TS, nullable=False),
    sa.Column("first_event_id", sa.String(64), nullable=False),
)

# Events that could not be analyzed: retried, then dead-lettered.
failures = sa.Table(
    "failures", metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("dead_lettered", sa.Boolean, nullable=False),
    sa.Column("last_at", _TS, nullable=False),
    # migration 0006_faults2: crashfleet dlq replay marks the rows it re-published; a later
    # store of the event resolves the row
    sa.Column("replayed_at", _TS),
    sa.Column("replays", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resolved_at", _TS),
)

# -- web read model (migration 0002_web) ------------------------------------------------------
# Aggregates kept current by CrashStore.record in the crash's own transaction, so pages and the
# metrics collector read a few rows per cluster instead of scanning crashes.

cluster_days = sa.Table(
    "cluster_days", metadata,
    sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),  # UTC day of the crash
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_cluster_days_day", "day", "cluster_id"),
)


def _facet(name: str, column: str, length: int) -> sa.Table:
    """Counts of one cluster's crashes by one facet (kernel, host, taint set, module)."""
    return sa.Table(
        name, metadata,
        sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
        sa.Column(column, sa.String(length), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Index(f"ix_{name}_{column}", column, "cluster_id"),
        sa.Index(f"ix_{name}_top", "cluster_id", "count"),
    )


cluster_kernels = _facet("cluster_kernels", "kernel", 128)
cluster_hosts = _facet("cluster_hosts", "host", 255)
cluster_taints = _facet("cluster_taints", "taint", 32)
cluster_modules = _facet("cluster_modules", "module", 128)
cluster_arches = _facet("cluster_arches", "arch", 16)  # 0005_arch: a facet, not in the key

# Crashes per cluster in each time window of the cluster list (0006_windows): ``cur`` in the
# ``days`` days up to ``window_state.as_of``, ``prev`` in the ``days`` before. Kept by the
# write path; rebuilt from cluster_days when a reader's day differs from ``as_of``, so the
# list reads one row per cluster instead of summing its days.
cluster_windows = sa.Table(
    "cluster_windows", metadata,
    sa.Column("days", sa.Integer, primary_key=True),
    sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
    sa.Column("cur", sa.Integer, nullable=False),
    sa.Column("prev", sa.Integer, nullable=False),
    sa.Index("ix_cluster_windows_cur", "days", "cur"),
)

window_state = sa.Table(
    "window_state", metadata,
    sa.Column("days", sa.Integer, primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),  # the UTC day cluster_windows counts up to
)

# Crashes per kernel release across the fleet (the metrics collector's by-kernel counts).
kernel_counts = sa.Table(
    "kernel_counts", metadata,
    sa.Column("kernel", sa.String(128), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# Triage state of a cluster: open, fixed (in kernel ``fixed_in``) or ignored. ``regressed_at``
# is set when a fixed cluster recurs on a kernel at or after the fix.
triage = sa.Table(
    "triage", metadata,
    sa.Column("cluster_id", sa.String(32), sa.ForeignKey("clusters.id"), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("fixed_in", sa.String(128)),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("who", sa.String(255), nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("regressed_at", _TS),
    sa.Column("regressed_kernel", sa.String(128)),
    sa.Index("ix_triage_state", "state"),
)

sa.Index("ix_crashes_host_time", crashes.c.host, crashes.c.analyzed_at)
sa.Index("ix_crashes_cluster_time", crashes.c.cluster_id, crashes.c.analyzed_at)
sa.Index("ix_clusters_last_seen", clusters.c.last_seen)
sa.Index("ix_clusters_first_seen", clusters.c.first_seen)
sa.Index("ix_clusters_count", clusters.c.count)

# Re-analyses of stored crashes: one row per (crash, request), so a redelivered request
# changes nothing twice; the crash row holds the current signature, this table its history.
crash_history = sa.Table(
    "crash_history", metadata,
    sa.Column("event_id", sa.String(64), sa.ForeignKey("crashes.event_id"), primary_key=True),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("old_signature_id", sa.String(32), nullable=False),
    sa.Column("old_cluster_id", sa.String(32), nullable=False),
    sa.Column("new_signature_id", sa.String(32), nullable=False),
    sa.Column("new_cluster_id", sa.String(32), nullable=False),
)
