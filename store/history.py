"""Re-analysis of stored crashes: which crashes to redo, and moving a crash to its new
signature and cluster exactly once, keeping what it was in ``crash_history``.

Exactly once: each re-analysis request has an id; the ``(event_id, request_id)`` history row
is inserted first in the same transaction as the count moves, so a redelivered request (or
two analyzers handling it at once) changes the counts one time only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from store.aggregates import findings_json, modules_of, remove_from_aggregates, update_aggregates
from store.errors import unavailable_as_retryable
from store.schema import crash_history, crashes
from store.store import CrashRecord, CrashStore

__all__ = ["HistoryRow", "ReanalysisTarget", "Reclassified", "history", "reclassify",
           "select_for_reanalysis"]


@dataclass(frozen=True)
class ReanalysisTarget:
    """A stored crash to analyze again (enough to rebuild its crash-reported event)."""

    event_id: str
    host: str
    machine_id: str
    kernel_release: str | None
    build_id: str | None
    crash_time: datetime | None
    dump_key: str | None
    report_key: str | None


@dataclass(frozen=True)
class Reclassified:
    """``applied`` False: this request had been applied before (nothing changed now)."""

    applied: bool
    moved: bool
    old_cluster_id: str
    cluster_id: str


@dataclass(frozen=True)
class HistoryRow:
    request_id: str
    at: datetime
    old_signature_id: str
    old_cluster_id: str
    new_signature_id: str
    new_cluster_id: str


def select_for_reanalysis(store: CrashStore, *, build_id: str | None = None,
                          cluster_id: str | None = None, since: datetime | None = None,
                          everything: bool = False,
                          limit: int = 1_000_000) -> list[ReanalysisTarget]:
    """The stored crashes matching every given criterion (``everything``: all of them),
    oldest analysis first."""
    q = sa.select(crashes).order_by(crashes.c.analyzed_at, crashes.c.event_id).limit(limit)
    if build_id is not None:
        q = q.where(crashes.c.build_id == build_id)
    if cluster_id is not None:
        q = q.where(crashes.c.cluster_id == cluster_id)
    if since is not None:
        q = q.where(crashes.c.analyzed_at >= since)
    if not everything and build_id is None and cluster_id is None and since is None:
        raise ValueError("say which crashes: build id, cluster, since, or everything")
    with unavailable_as_retryable(store.safe_url), store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [ReanalysisTarget(r.event_id, r.host, r.machine_id, r.kernel_release, r.build_id,
                             r.crash_time, r.dump_key, r.report_key) for r in rows]


def reclassify(store: CrashStore, rec: CrashRecord, request_id: str) -> Reclassified | None:
    """Give the stored crash ``rec.event_id`` its re-analyzed signature (and cluster): counts
    move from the old signature and cluster to the new ones once per ``request_id``. None
    when the crash is not stored (the caller records it as new)."""
    sig = rec.signature
    with unavailable_as_retryable(store.safe_url), store.engine.begin() as conn:
        lock = sa.select(crashes.c.signature_id, crashes.c.cluster_id, crashes.c.crash_time,
                         crashes.c.analyzed_at, crashes.c.kernel_release, crashes.c.host,
                         crashes.c.taint, crashes.c.findings, crashes.c.arch
                         ).where(crashes.c.event_id == rec.event_id)
        if conn.dialect.name == "postgresql":
            lock = lock.with_for_update()
        row = conn.execute(lock).first()
        if row is None:
            return None
        cluster_id, _, _ = store._place(conn, sig, rec.crash_time or row.analyzed_at, rec.title)
        inserted = conn.execute(store._insert(crash_history).values(
            event_id=rec.event_id, request_id=request_id, at=rec.analyzed_at,
            old_signature_id=row.signature_id, old_cluster_id=row.cluster_id,
            new_signature_id=sig.id, new_cluster_id=cluster_id,
        ).on_conflict_do_nothing().returning(crash_history.c.request_id)).first() is not None
        if not inserted:
            conn.rollback()  # applied before: undo any side rows this attempt created
            return Reclassified(False, False, row.signature_id, row.cluster_id)
        moved = sig.id != row.signature_id
        if moved:
            seen_at = row.crash_time or row.analyzed_at
            store._count(conn, row.signature_id, row.cluster_id, seen_at, -1)
            store._count(conn, sig.id, cluster_id, seen_at, +1)
            if cluster_id != row.cluster_id:
                # The web's aggregates move with the crash. Modules: those of its findings
                # (the old signature's frame modules are not kept per crash).
                remove_from_aggregates(
                    conn, cluster_id=row.cluster_id, seen_at=seen_at,
                    kernel=row.kernel_release, host=row.host, taint=row.taint,
                    modules=modules_of((), findings_json(row.findings)), arch=row.arch)
                update_aggregates(conn, store._insert, cluster_id=cluster_id, seen_at=seen_at,
                                  kernel=rec.kernel_release, host=row.host, taint=sig.taint,
                                  frames=sig.frames, findings=rec.findings,
                                  now=rec.analyzed_at, arch=row.arch)
        conn.execute(sa.update(crashes).where(crashes.c.event_id == rec.event_id).values(
            signature_id=sig.id, cluster_id=cluster_id, panic_class=sig.panic_class,
            taint=sig.taint, findings=json.dumps(list(rec.findings)), partial=rec.partial,
            analyzed_at=rec.analyzed_at, report_key=rec.report_key,
            kernel_release=rec.kernel_release, build_id=rec.build_id,
            title=rec.title.text if rec.title is not None else None,
            explanation=json.dumps(rec.explanation) if rec.explanation is not None else None))
    return Reclassified(True, moved, row.cluster_id, cluster_id)


def history(store: CrashStore, event_id: str) -> list[HistoryRow]:
    """The re-analyses of one crash, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(crash_history)
                            .where(crash_history.c.event_id == event_id)
                            .order_by(crash_history.c.at)).all()
    return [HistoryRow(r.request_id, r.at, r.old_signature_id, r.old_cluster_id,
                       r.new_signature_id, r.new_cluster_id) for r in rows]
