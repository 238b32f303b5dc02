"""Aggregates kept current at write time: per cluster, crashes by day, kernel, host, taint set,
module and architecture, and the regression check of fixed clusters. Called by
:meth:`CrashStore.record` inside the crash's own transaction, so a redelivered event (no
insert) changes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from store.schema import (
    cluster_arches,
    cluster_days,
    cluster_hosts,
    cluster_kernels,
    cluster_modules,
    cluster_taints,
    clusters,
    kernel_counts,
    triage,
)
from store.windows import count_in_windows

__all__ = ["kernel_key", "modules_of", "remove_from_aggregates", "update_aggregates"]

_FRAME_MODULE = re.compile(r" \[([^\]\s]{1,128})\]$")
_NUM = re.compile(r"\d+|[^\d.\-+~_]+")
MAX_MODULES = 32  # module rows per crash: a frame list is short, findings are few


def kernel_key(release: str) -> tuple[tuple[int, Any], ...]:
    """A sort key for kernel releases: ``5.10.0-32-cloud-amd64`` < ``6.1.0-56-cloud-amd64`` <
    ``6.12.0-1``; numbers compare as numbers, text runs before them (``-rc1`` < ``-1``)."""
    return tuple((0, int(p)) if p.isdigit() else (-1, p) for p in _NUM.findall(release))


def modules_of(frames: Iterable[str], findings: Iterable[dict[str, Any]]) -> list[str]:
    """The modules a crash names: those of its signature frames (``fn [mod]``) and findings."""
    out: list[str] = []
    for f in frames:
        m = _FRAME_MODULE.search(f)
        if m and m[1] not in out:
            out.append(m[1])
    for fd in findings:
        mod = fd.get("module")
        if isinstance(mod, str) and mod and mod[:128] not in out:
            out.append(mod[:128])
    return out[:MAX_MODULES]


def _bump(conn: sa.Connection, insert: Callable[[sa.Table], Any], table: sa.Table,
          key: dict[str, Any], seen_at: datetime | None) -> int:
    """Count one crash in ``table``'s row ``key``; returns the row's new count."""
    values = dict(key, count=1)
    update: dict[str, Any] = {"count": table.c.count + 1}
    if seen_at is not None:
        values.update(first_seen=seen_at, last_seen=seen_at)
        update["first_seen"] = sa.case((table.c.first_seen > seen_at, seen_at),
                                       else_=table.c.first_seen)
        update["last_seen"] = sa.case((table.c.last_seen < seen_at, seen_at),
                                      else_=table.c.last_seen)
    return int(conn.execute(insert(table).values(**values).on_conflict_do_update(
        index_elements=list(key), set_=update).returning(table.c.count)).scalar_one())


def update_aggregates(conn: sa.Connection, insert: Callable[[sa.Table], Any], *,
                      cluster_id: str, seen_at: datetime, kernel: str | None, host: str,
                      taint: str, frames: Iterable[str], findings: Iterable[dict[str, Any]],
                      now: datetime, arch: str = "unknown") -> None:
    """Count one stored crash in every aggregate of its cluster."""
    _bump(conn, insert, cluster_days, {"cluster_id": cluster_id, "day": seen_at.date()}, None)
    count_in_windows(conn, insert, cluster_id=cluster_id, day=seen_at.date(), delta=1)
    release = (kernel or "unknown")[:128]
    _bump(conn, insert, cluster_kernels, {"cluster_id": cluster_id, "kernel": release}, seen_at)
    if _bump(conn, insert, cluster_hosts, {"cluster_id": cluster_id, "host": host[:255]},
             seen_at) == 1:
        conn.execute(sa.update(clusters).where(clusters.c.id == cluster_id)
                     .values(hosts=clusters.c.hosts + 1))
    _bump(conn, insert, kernel_counts, {"kernel": release}, None)
    _bump(conn, insert, cluster_taints, {"cluster_id": cluster_id, "taint": taint[:32]}, seen_at)
    for mod in modules_of(frames, findings):
        _bump(conn, insert, cluster_modules, {"cluster_id": cluster_id, "module": mod}, seen_at)
    _bump(conn, insert, cluster_arches, {"cluster_id": cluster_id, "arch": arch[:16]}, seen_at)
    row = conn.execute(sa.select(triage.c.state, triage.c.fixed_in, triage.c.regressed_at)
                       .where(triage.c.cluster_id == cluster_id)).first()
    if (row is not None and row.state == "fixed" and row.fixed_in and kernel
            and row.regressed_at is None and kernel_key(kernel) >= kernel_key(row.fixed_in)):
        conn.execute(sa.update(triage).where(triage.c.cluster_id == cluster_id)
                     .values(regressed_at=now, regressed_kernel=release))


def _drop(conn: sa.Connection, table: sa.Table, key: dict[str, Any]) -> bool:
    """Take one crash out of ``table``'s row ``key`` (the row goes at zero); True when the row
    went. First and last seen stay as they were: a bound, not an exact value."""
    where = [table.c[k] == v for k, v in key.items()]
    conn.execute(sa.update(table).where(*where, table.c.count > 0)
                 .values(count=table.c.count - 1))
    gone = conn.execute(sa.delete(table).where(*where, table.c.count <= 0)
                        .returning(table.c.count)).first()
    return gone is not None


def remove_from_aggregates(conn: sa.Connection, *, cluster_id: str, seen_at: datetime,
                           kernel: str | None, host: str, taint: str,
                           modules: Iterable[str], arch: str = "unknown") -> None:
    """Take one crash out of its old cluster's aggregates (a re-analysis moved it); the fleet's
    per-kernel counts are unchanged (the crash is still there)."""
    _drop(conn, cluster_days, {"cluster_id": cluster_id, "day": seen_at.date()})
    count_in_windows(conn, None, cluster_id=cluster_id, day=seen_at.date(), delta=-1)
    _drop(conn, cluster_kernels, {"cluster_id": cluster_id,
                                  "kernel": (kernel or "unknown")[:128]})
    if _drop(conn, cluster_hosts, {"cluster_id": cluster_id, "host": host[:255]}):
        conn.execute(sa.update(clusters).where(clusters.c.id == cluster_id,
                                               clusters.c.hosts > 0)
                     .values(hosts=clusters.c.hosts - 1))
    _drop(conn, cluster_taints, {"cluster_id": cluster_id, "taint": taint[:32]})
    for mod in modules:
        _drop(conn, cluster_modules, {"cluster_id": cluster_id, "module": mod})
    _drop(conn, cluster_arches, {"cluster_id": cluster_id, "arch": arch[:16]})


def findings_json(raw: str) -> list[dict[str, Any]]:
    """A stored findings column, tolerant of bad rows (they hold host-derived text)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
