"""The read model behind the web UI, its JSON API and the terminal views: filtered, sorted,
paginated cluster lists, one cluster's facets, crashes and similar clusters, one host's
crashes. Everything is answered from the clusters table and the per-cluster aggregates
(:mod:`store.aggregates`) with indexed lookups; crashes are read only a page at a time."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from store.schema import (
    cluster_arches,
    cluster_days,
    cluster_hosts,
    cluster_kernels,
    cluster_modules,
    cluster_taints,
    cluster_windows,
    clusters,
    crashes,
    signatures,
    triage,
)
from store.triage import TriageState, read_triage
from store.windows import ensure_windows

__all__ = ["SORTS", "WINDOWS", "ClusterDetail", "ClusterPage", "ClusterQuery", "ClusterSummary",
           "CrashEntry", "cluster_detail", "crash_entry", "host_crashes", "host_daily",
           "list_clusters"]

# Time windows of the cluster list, in days (None: all time).
WINDOWS: dict[str, int | None] = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365,
                                  "all": None}
SORTS = ("count", "last_seen", "first_seen", "trend")
SPARK_DAYS_ALL = 90  # sparkline length when the window is all time
RISING_FACTOR = 2  # "rising": at least this times the previous window's count …
RISING_MIN = 3  # … and at least this many crashes in the window


def _utc(v: datetime | None) -> datetime | None:
    return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it literally anywhere (escape char ``\\``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class ClusterQuery:
    """What the cluster list shows: filters (None: any), sort, page (from 1)."""

    window: str = "30d"
    kernel: str | None = None
    host: str | None = None
    module: str | None = None
    finding: str | None = None
    taint: str | None = None  # one taint letter
    arch: str | None = None  # x86_64, arm64 (or unknown)
    state: str | None = None  # open, fixed, ignored, regressed
    q: str | None = None
    sort: str = "count"
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class ClusterSummary:
    """One row of the cluster list. ``window_count``/``previous_count``: crashes in the
    window and in the window before it; ``daily`` per-day counts over the sparkline's days."""

    id: str
    title: str
    signature: str
    panic_class: str
    taint: str
    findings: tuple[str, ...]
    count: int
    window_count: int
    previous_count: int
    hosts: int
    kernels: int
    first_kernel: str | None
    last_kernel: str | None
    first_seen: datetime
    last_seen: datetime
    daily: tuple[tuple[date, int], ...]
    triage: TriageState
    new: bool
    rising: bool
    arches: tuple[str, ...] = ()  # architectures of its crashes, most crashes first

    @property
    def regressed(self) -> bool:
        return self.triage.regressed


@dataclass(frozen=True)
class ClusterPage:
    rows: tuple[ClusterSummary, ...]
    total: int
    query: ClusterQuery
    since: date | None


@dataclass(frozen=True)
class CrashEntry:
    """One stored crash (a row of the crashes tables, or the head of the crash page)."""

    event_id: str
    cluster_id: str
    host: str
    machine_id: str
    kernel: str | None
    build_id: str | None
    crash_time: datetime | None
    analyzed_at: datetime
    signature_id: str
    signature: str
    title: str | None
    panic_class: str
    taint: str
    findings: tuple[dict[str, Any], ...]
    dump_key: str | None
    report_key: str | None
    partial: bool
    explanation: str | None = None  # JSON: how the signature and title were made
    arch: str = "unknown"

    @property
    def seen_at(self) -> datetime:
        return self.crash_time or self.analyzed_at


@dataclass(frozen=True)
class ClusterDetail:
    summary: ClusterSummary
    facets: dict[str, tuple[tuple[str, int], ...]]  # kernel/host/taint/module/arch -> counts
    facet_totals: dict[str, int]  # distinct values per facet
    crashes: tuple[CrashEntry, ...]
    similar: tuple[tuple[ClusterSummary, float], ...] = field(default_factory=tuple)
    signatures: tuple[tuple[str, str, int], ...] = ()  # (id, text, count)
    # How the signature of the cluster's newest crash was made (JSON text), and that crash.
    explanation: str | None = None
    explanation_event: str | None = None
    # whether older crashes follow this page; the summary's count keeps pruned crashes, so
    # pages are not counted from it
    more_crashes: bool = False


def _title(row: Any) -> str:
    # Titles come from the titles work (a ``title`` column) where present.
    title = row.get("title") if hasattr(row, "get") else None
    return str(title or row["signature_text"])


def _window(query: ClusterQuery, now: datetime) -> tuple[date | None, date | None]:
    days = WINDOWS[query.window]
    if days is None:
        return None, None
    since = now.date() - timedelta(days=days - 1)
    return since, since - timedelta(days=days)


def _filters(query: ClusterQuery) -> list[Any]:
    conds: list[Any] = []
    for value, table, col in ((query.kernel, cluster_kernels, "kernel"),
                              (query.host, cluster_hosts, "host"),
                              (query.module, cluster_modules, "module"),
                              (query.arch, cluster_arches, "arch")):
        if value:
            conds.append(clusters.c.id.in_(sa.select(table.c.cluster_id)
                                           .where(table.c[col] == value)))
    if query.finding:
        conds.append(clusters.c.findings.like(_like('"' + query.finding), escape="\\"))
    if query.taint:
        conds.append(clusters.c.taint.like(_like(query.taint), escape="\\"))
    if query.q:
        pattern = _like(query.q.lower())
        text_cols = [clusters.c.signature_text] + (
            [clusters.c.title] if "title" in clusters.c else [])
        conds.append(sa.or_(*(sa.func.lower(c).like(pattern, escape="\\") for c in text_cols)))
    if query.state == "open":
        conds.append(sa.or_(triage.c.state.is_(None), triage.c.state == "open"))
    elif query.state == "regressed":
        conds.append(sa.and_(triage.c.state == "fixed", triage.c.regressed_at.is_not(None)))
    elif query.state:
        conds.append(triage.c.state == query.state)
    return conds


def list_clusters(engine: sa.Engine, query: ClusterQuery,
                  now: datetime | None = None) -> ClusterPage:
    """One page of the cluster list."""
    now = now or datetime.now(UTC)
    since, _ = _window(query, now)
    conds = _filters(query)
    idcol: Any = clusters.c.id
    if since is None:
        cur: Any = clusters.c.count
        prev: Any = sa.literal(0)
        source: Any = clusters
    else:
        # One row per cluster with its window counts (kept at write time; see store.windows).
        days = WINDOWS[query.window]
        assert days is not None
        ensure_windows(engine, days, now.date())
        w = cluster_windows
        cur, prev = w.c.cur, w.c.prev
        if not conds and query.sort in ("count", "trend"):
            # The default list: the window rows alone answer it (one index, narrow rows).
            source, idcol = w, w.c.cluster_id
            conds.append(w.c.days == days)
        else:
            source = clusters.join(w, sa.and_(w.c.cluster_id == clusters.c.id,
                                              w.c.days == days))
        conds.append(cur > 0)
    if query.state:
        source = source.outerjoin(triage, triage.c.cluster_id == clusters.c.id)
    order = {"count": [cur.desc()], "last_seen": [clusters.c.last_seen.desc()],
             "first_seen": [clusters.c.first_seen.desc()],
             "trend": [(cur - prev).desc(), cur.desc()]}[query.sort]
    # The page's ids first, with the total riding along (a window function over narrow
    # rows: one pass over the clusters, not two); then the page's clusters in full.
    stmt = (sa.select(idcol.label("id"), cur.label("cur"), prev.label("prev"),
                      sa.func.count().over().label("total")).select_from(source)
            .where(*conds).order_by(*order, idcol)
            .limit(query.per_page).offset((query.page - 1) * query.per_page))
    with engine.connect() as conn:
        page = conn.execute(stmt).all()
        total = page[0].total if page else 0
        if not page and query.page > 1:  # past the end: still say how many there are
            total = conn.execute(sa.select(sa.func.count()).select_from(source)
                                 .where(*conds)).scalar_one()
        full = {r["id"]: r for r in conn.execute(
            sa.select(clusters).where(clusters.c.id.in_([p.id for p in page]))).mappings()}
        rows = [dict(full[p.id], cur=p.cur, prev=p.prev) for p in page]
        summaries = _summaries(conn, rows, since, now)
    return ClusterPage(tuple(summaries), int(total), query, since)


def _summaries(conn: sa.Connection, rows: Any, since: date | None,
               now: datetime) -> list[ClusterSummary]:
    ids = [r["id"] for r in rows]
    if not ids:
        return []
    spark_since = since or now.date() - timedelta(days=SPARK_DAYS_ALL - 1)
    days = (now.date() - spark_since).days + 1
    dates = tuple(spark_since + timedelta(days=i) for i in range(days))
    daily: dict[str, list[int]] = {}
    for cid, day, n in conn.execute(
            sa.select(cluster_days.c.cluster_id, cluster_days.c.day, cluster_days.c.count)
            .where(cluster_days.c.cluster_id.in_(ids), cluster_days.c.day >= spark_since)):
        i = ((day if isinstance(day, date) else date.fromisoformat(str(day))) - spark_since).days
        if 0 <= i < days:
            daily.setdefault(cid, [0] * days)[i] = int(n)
    kernels = _kernel_spans(conn, ids)
    arches: dict[str, list[str]] = {}
    for cid, arch in conn.execute(
            sa.select(cluster_arches.c.cluster_id, cluster_arches.c.arch)
            .where(cluster_arches.c.cluster_id.in_(ids))
            .order_by(cluster_arches.c.count.desc(), cluster_arches.c.arch)):
        arches.setdefault(cid, []).append(str(arch))
    states = read_triage(conn, ids)
    out = []
    for r in rows:
        cid = r["id"]
        n_kernels, first_kernel, last_kernel = kernels.get(cid, (0, None, None))
        per_day = daily.get(cid) or [0] * days
        cur, prev = int(r["cur"] or 0), int(r["prev"] or 0)
        first_seen = _utc(r["first_seen"])
        assert first_seen is not None
        new = since is not None and first_seen.date() >= since  # first seen in the window
        out.append(ClusterSummary(
            id=cid, title=_title(r), signature=r["signature_text"],
            panic_class=r["panic_class"], taint=r["taint"],
            findings=tuple(json.loads(r["findings"])), count=int(r["count"]),
            window_count=cur, previous_count=prev, hosts=int(r["hosts"]),
            kernels=n_kernels, first_kernel=first_kernel, last_kernel=last_kernel,
            first_seen=first_seen, last_seen=_utc(r["last_seen"]) or first_seen,
            daily=tuple(zip(dates, per_day, strict=True)),
            triage=states.get(cid) or TriageState(cid, "open", None, "", "", None),
            new=new,
            rising=since is not None and not new and cur >= RISING_MIN
            and cur >= RISING_FACTOR * max(prev, 1),
            arches=tuple(arches.get(cid, ())),
        ))
    return out


def _kernel_spans(conn: sa.Connection,
                  ids: list[str]) -> dict[str, tuple[int, str | None, str | None]]:
    """Per cluster: its number of kernels, the first kernel it crashed on and the last (one
    row per cluster from the database, however many kernels)."""
    k = cluster_kernels.alias("k")

    def pick(*order: Any) -> Any:
        return (sa.select(k.c.kernel).where(k.c.cluster_id == cluster_kernels.c.cluster_id)
                .order_by(*order).limit(1).scalar_subquery())

    stmt = (sa.select(cluster_kernels.c.cluster_id, sa.func.count(),
                      pick(k.c.first_seen, k.c.last_seen, k.c.kernel),
                      pick(k.c.last_seen.desc(), k.c.kernel.desc()))
            .where(cluster_kernels.c.cluster_id.in_(ids))
            .group_by(cluster_kernels.c.cluster_id))
    return {cid: (int(n), first, last) for cid, n, first, last in conn.execute(stmt)}


def _crash_entries(rows: Any) -> tuple[CrashEntry, ...]:
    from store.aggregates import findings_json

    return tuple(CrashEntry(
        event_id=r.event_id, cluster_id=r.cluster_id, host=r.host, machine_id=r.machine_id,
        kernel=r.kernel_release, build_id=r.build_id, crash_time=_utc(r.crash_time),
        analyzed_at=_utc(r.analyzed_at) or r.analyzed_at, signature_id=r.signature_id,
        signature=r.text, title=getattr(r, "title", None), panic_class=r.panic_class,
        taint=r.taint, findings=tuple(findings_json(r.findings)), dump_key=r.dump_key,
        report_key=r.report_key, partial=bool(r.partial),
        explanation=getattr(r, "explanation", None), arch=r.arch) for r in rows)


def _crash_select() -> Any:
    return (sa.select(crashes, signatures.c.text)
            .join(signatures, signatures.c.id == crashes.c.signature_id))


def cluster_detail(engine: sa.Engine, cluster_id: str, *, crash_limit: int = 100,
                   crash_offset: int = 0, facet_limit: int = 15,
                   now: datetime | None = None) -> ClusterDetail | None:
    """One cluster: its summary (window: all time), facets, a page of crashes, similar
    clusters; None when there is no such cluster."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        row = conn.execute(sa.select(clusters, clusters.c.count.label("cur"),
                                     sa.literal(0).label("prev"))
                           .where(clusters.c.id == cluster_id)).mappings().first()
        if row is None:
            return None
        (summary,) = _summaries(conn, [row], None, now)
        facets: dict[str, tuple[tuple[str, int], ...]] = {}
        totals: dict[str, int] = {}
        for name, table, col in (("kernel", cluster_kernels, "kernel"),
                                 ("host", cluster_hosts, "host"),
                                 ("taint", cluster_taints, "taint"),
                                 ("module", cluster_modules, "module"),
                                 ("arch", cluster_arches, "arch")):
            where = table.c.cluster_id == cluster_id
            facets[name] = tuple((str(v), int(n)) for v, n in conn.execute(
                sa.select(table.c[col], table.c.count).where(where)
                .order_by(table.c.count.desc(), table.c[col]).limit(facet_limit)))
            totals[name] = summary.hosts if name == "host" else conn.execute(
                sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
        crash_rows = conn.execute(_crash_select().where(crashes.c.cluster_id == cluster_id)
                                  .order_by(crashes.c.analyzed_at.desc(), crashes.c.event_id)
                                  .limit(crash_limit + 1).offset(crash_offset)).all()
        sigs = tuple((str(i), str(t), int(n)) for i, t, n in conn.execute(
            sa.select(signatures.c.id, signatures.c.text, signatures.c.count)
            .where(signatures.c.cluster_id == cluster_id)
            .order_by(signatures.c.count.desc()).limit(20)))
        similar = _similar(conn, row, now)
        newest = conn.execute(sa.select(crashes.c.event_id, crashes.c.explanation)
                              .where(crashes.c.cluster_id == cluster_id)
                              .order_by(crashes.c.analyzed_at.desc(), crashes.c.event_id)
                              .limit(1)).first()
    return ClusterDetail(summary, facets, totals, _crash_entries(crash_rows[:crash_limit]),
                         similar, sigs, explanation=newest.explanation if newest else None,
                         explanation_event=newest.event_id if newest else None,
                         more_crashes=len(crash_rows) > crash_limit)


def _similar(conn: sa.Connection, row: Any, now: datetime,
             limit: int = 8) -> tuple[tuple[ClusterSummary, float], ...]:
    """Clusters of the same panic class whose frames look alike, or with the same findings:
    the ones clustering kept apart that a person may want to merge by eye."""
    frames = tuple(json.loads(row["frames"]))
    scored: list[tuple[float, int, str]] = []
    for cid, other_frames, findings, count in conn.execute(
            sa.select(clusters.c.id, clusters.c.frames, clusters.c.findings, clusters.c.count)
            .where(clusters.c.panic_class == row["panic_class"], clusters.c.id != row["id"])
            .order_by(clusters.c.count.desc()).limit(2000)):
        theirs = tuple(json.loads(other_frames))
        ratio = difflib.SequenceMatcher(a=frames, b=theirs, autojunk=False).ratio()
        if findings == row["findings"] and row["findings"] != "[]":
            ratio = max(ratio, 0.5)
        if ratio >= 0.4:
            scored.append((ratio, count, cid))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    top = scored[:limit]
    if not top:
        return ()
    rows = {r["id"]: r for r in conn.execute(
        sa.select(clusters, clusters.c.count.label("cur"), sa.literal(0).label("prev"))
        .where(clusters.c.id.in_([c for _, _, c in top]))).mappings()}
    summaries = _summaries(conn, [rows[c] for _, _, c in top], None, now)
    return tuple((s, round(r, 2)) for s, (r, _, _) in zip(summaries, top, strict=True))


def crash_entry(engine: sa.Engine, event_id: str) -> CrashEntry | None:
    """One crash by event id."""
    with engine.connect() as conn:
        rows = conn.execute(_crash_select().where(crashes.c.event_id == event_id)).all()
    found = _crash_entries(rows)
    return found[0] if found else None


def host_daily(engine: sa.Engine, host: str, days: int, now: datetime,
               cap: int = 5000) -> tuple[tuple[date, int], ...]:
    """One host's crashes per day over the last ``days`` days (from its newest ``cap``
    crashes: the host index answers it without a scan)."""
    since = now.date() - timedelta(days=days - 1)
    counts: dict[date, int] = {}
    with engine.connect() as conn:
        for t, a in conn.execute(sa.select(crashes.c.crash_time, crashes.c.analyzed_at)
                                 .where(crashes.c.host == host)
                                 .order_by(crashes.c.analyzed_at.desc()).limit(cap)):
            day = (_utc(t) or _utc(a) or now).date()
            if day >= since:
                counts[day] = counts.get(day, 0) + 1
    return tuple((since + timedelta(days=i), counts.get(since + timedelta(days=i), 0))
                 for i in range(days))


def host_crashes(engine: sa.Engine, host: str, *, limit: int = 100,
                 offset: int = 0) -> tuple[int, tuple[CrashEntry, ...]]:
    """One host's crashes, newest first, with the host's total."""
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(crashes)
                             .where(crashes.c.host == host)).scalar_one()
        rows = conn.execute(_crash_select().where(crashes.c.host == host)
                            .order_by(crashes.c.analyzed_at.desc(), crashes.c.event_id)
                            .limit(limit).offset(offset)).all()
    return int(total), _crash_entries(rows)
