"""The crash store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create
them; this module is the single description both the code and the migrations follow."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "clusters",
    "crash_history",
    "crashes",
    "failures",
    "metadata",
    "signatures",
    "taint_sets",
]

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
)

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
