"""The crash store: SQLAlchemy Core on SQLite (embedded default) or PostgreSQL (fleets).

Recording a crash is idempotent: the event id is the crashes table's primary key, and the
insert, the signature and cluster counters and the fleet's taint sets change in one
transaction, so a redelivered event changes nothing and two analyzers never double-count.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from signature import Signature
from signature.cluster import ClusterCandidate, choose_cluster
from signature.titles import Title
from store.aggregates import update_aggregates
from store.errors import unavailable_as_retryable
from store.schema import (
    cluster_arches,
    cluster_kernels,
    clusters,
    crashes,
    failures,
    kernel_counts,
    signatures,
    taint_sets,
    triage,
)
from store.triage import TriageState, read_triage, write_triage

__all__ = ["ClusterRow", "CrashRecord", "CrashRow", "CrashStore", "RecordOutcome", "StoreStats"]


@dataclass(frozen=True)
class CrashRecord:
    """One analyzed crash, ready to store. Times are timezone-aware UTC."""

    event_id: str
    host: str
    machine_id: str
    kernel_release: str | None
    build_id: str | None
    crash_time: datetime | None
    analyzed_at: datetime
    dump_key: str | None
    report_key: str | None
    signature: Signature
    findings: tuple[dict[str, Any], ...]
    partial: bool
    title: Title | None = None
    explanation: dict[str, Any] | None = None  # how the signature was made (JSON-ready)
    arch: str | None = None  # x86_64 or arm64, from the report (None: it could not tell)


@dataclass(frozen=True)
class RecordOutcome:
    """What recording changed: nothing at all when ``inserted`` is False (a redelivery)."""

    inserted: bool
    cluster_id: str
    new_signature: bool
    new_cluster: bool
    new_taint_set: bool
    new_taint_letters: tuple[str, ...]


@dataclass(frozen=True)
class ClusterRow:
    id: str
    signature: str
    panic_class: str
    taint: str
    findings: tuple[str, ...]
    count: int
    hosts: int
    kernels: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    title: str | None = None


@dataclass(frozen=True)
class CrashRow:
    event_id: str
    host: str
    kernel_release: str | None
    crash_time: datetime | None
    analyzed_at: datetime
    signature: str
    dump_key: str | None
    report_key: str | None
    title: str | None = None


@dataclass(frozen=True)
class StoreStats:
    """Counts for the scrape-time metrics collector."""

    crashes_by_class: dict[str, int]
    crashes_by_taint_flag: dict[str, int]
    crashes_by_kernel: dict[str, int]
    crashes_by_cluster: dict[str, int]
    module_unload_by_module: dict[str, int]
    signatures: int
    clusters: int
    taint_sets: int
    failures: int
    dead_lettered: int
    regressed: int = 0
    crashes_by_arch: dict[str, int] = field(default_factory=dict)
    cluster_signatures: dict[str, str] = field(default_factory=dict)  # the top clusters'


_MIGRATE_LOCK = 0x63726173686D6967  # "crashmig": the advisory lock serializing migrations


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes: they were stored as UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CrashStore:
    """The store at SQLAlchemy ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://…``)."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        # PostgreSQL's JIT compiles a query whose estimated cost is high: 20-100 ms spent on
        # page queries that run in 2 ms (measured on the web UI's per-cluster subqueries).
        connect_args = {"options": "-c jit=off"} if url.startswith("postgresql") else {}
        self.engine = engine or sa.create_engine(url, pool_pre_ping=True,
                                                 connect_args=connect_args)
        # Placing a crash reads the clusters and then may create one: two placements at once
        # (an analyzer with several events in flight) would each miss the other's new cluster.
        # In one process this lock orders them; across processes, PostgreSQL's advisory lock
        # on the cluster key does (see _place).
        self._placing = threading.Lock()
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration (Alembic), creating it when empty
        (``revision``: an older one, for migration tests)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with unavailable_as_retryable(self.safe_url), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several analyzers start at once: one migrates, the others wait and then
                # find the schema current.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # -- writing ------------------------------------------------------------------------------

    def record(self, rec: CrashRecord) -> RecordOutcome:
        """Store one crash (idempotent by event id) and update its signature and cluster."""
        sig = rec.signature
        now = rec.analyzed_at
        seen_at = rec.crash_time or now
        with self._placing, unavailable_as_retryable(self.safe_url), \
                self.engine.begin() as conn:
            if conn.execute(sa.select(crashes.c.event_id)
                            .where(crashes.c.event_id == rec.event_id)).first():
                cid = conn.execute(sa.select(crashes.c.cluster_id).where(
                    crashes.c.event_id == rec.event_id)).scalar_one()
                return RecordOutcome(False, cid, False, False, False, ())

            cluster_id, new_signature, new_cluster = self._place(conn, sig, seen_at, rec.title)

            # The event id decides: a concurrent analyzer that got here first wins. (RETURNING,
            # not rowcount: drivers disagree on rowcount for INSERT ... ON CONFLICT.)
            inserted = conn.execute(self._insert(crashes).values(
                event_id=rec.event_id, host=rec.host, machine_id=rec.machine_id,
                kernel_release=rec.kernel_release, build_id=rec.build_id,
                crash_time=rec.crash_time, analyzed_at=now, dump_key=rec.dump_key,
                report_key=rec.report_key, signature_id=sig.id, cluster_id=cluster_id,
                panic_class=sig.panic_class, taint=sig.taint,
                findings=json.dumps(list(rec.findings)), partial=rec.partial,
                title=rec.title.text if rec.title is not None else None,
                explanation=json.dumps(rec.explanation) if rec.explanation is not None
                else None, arch=crash_arch(rec.arch),
            ).on_conflict_do_nothing().returning(crashes.c.event_id)).first() is not None
            if not inserted:
                # Another analyzer stored this event concurrently: undo our side rows.
                conn.rollback()
                return RecordOutcome(False, cluster_id, False, False, False, ())

            self._count(conn, sig.id, cluster_id, seen_at, +1)
            _resolve_failure(conn, rec.event_id, now)

            update_aggregates(conn, self._insert, cluster_id=cluster_id, seen_at=seen_at,
                              kernel=rec.kernel_release, host=rec.host, taint=sig.taint,
                              frames=sig.frames, findings=rec.findings, now=now,
                              arch=crash_arch(rec.arch))
            known = {r[0] for r in conn.execute(sa.select(taint_sets.c.letters))}
            new_set = conn.execute(self._insert(taint_sets).values(
                letters=sig.taint, first_seen=now, first_event_id=rec.event_id,
            ).on_conflict_do_nothing().returning(taint_sets.c.letters)).first() is not None
            seen_letters = {ch for letters in known for ch in letters}
            new_letters = tuple(sorted(set(sig.taint) - seen_letters))
        return RecordOutcome(True, cluster_id, new_signature, new_cluster, new_set,
                             new_letters)

    def _choose(self, conn: sa.Connection, sig: Signature, titles: tuple[str, ...]
                ) -> tuple[str | None, str]:
        existing = conn.execute(sa.select(signatures.c.cluster_id).where(
            signatures.c.id == sig.id)).scalar_one_or_none()
        if existing is not None:
            return existing, "signature"
        rows = conn.execute(sa.select(clusters.c.id, clusters.c.frames,
                                      clusters.c.alt_titles).where(
            clusters.c.panic_class == sig.panic_class,
            clusters.c.taint == sig.taint,
            clusters.c.findings == json.dumps(list(sig.findings)),
        )).all()
        cands = [ClusterCandidate(r.id, tuple(json.loads(r.frames)),
                                  tuple(json.loads(r.alt_titles or "[]"))) for r in rows]
        joined = choose_cluster(sig, cands, titles)
        return joined, "joined" if joined is not None else "new"

    def cluster_for(self, sig: Signature, titles: tuple[str, ...] = ()) -> tuple[str | None, str]:
        """Where a crash with ``sig`` and alternative ``titles`` would be filed, read-only:
        ``(cluster id, "signature")`` for a known signature, ``(id, "joined")`` for a new one
        that joins a cluster, ``(None, "new")`` for a new cluster."""
        with self.engine.connect() as conn:
            return self._choose(conn, sig, titles)

    def _place(self, conn: sa.Connection, sig: Signature, seen_at: datetime,
               title: Title | None) -> tuple[str, bool, bool]:
        """(cluster id, new signature, new cluster) for ``sig`` (joined by frames, else by the
        alternative titles of ``title``), creating its signature and cluster rows (count 0)
        when new."""
        alts = title.alternatives if title is not None else ()
        _serialize_placement(conn, sig)
        found, how = self._choose(conn, sig, alts)
        new_signature = how != "signature"
        new_cluster = how == "new"
        cluster_id = found or sig.id
        if new_signature:
            if new_cluster:
                conn.execute(self._insert(clusters).values(
                    id=cluster_id, signature_text=sig.text, panic_class=sig.panic_class,
                    taint=sig.taint, findings=json.dumps(list(sig.findings)),
                    frames=json.dumps(list(sig.frames)), first_seen=seen_at,
                    last_seen=seen_at, count=0,
                    title=title.text if title is not None else None,
                    alt_titles=json.dumps(list(alts)),
                ).on_conflict_do_nothing())
            conn.execute(self._insert(signatures).values(
                id=sig.id, text=sig.text, cluster_id=cluster_id, first_seen=seen_at,
                last_seen=seen_at, count=0,
            ).on_conflict_do_nothing())
        return cluster_id, new_signature, new_cluster

    @staticmethod
    def _count(conn: sa.Connection, signature_id: str, cluster_id: str, seen_at: datetime,
               delta: int) -> None:
        """Add ``delta`` crashes seen at ``seen_at`` to a signature and its cluster (first/last
        seen widen only when a crash is added)."""
        for table, key in ((signatures, signature_id), (clusters, cluster_id)):
            values: dict[str, Any] = {"count": table.c.count + delta}
            if delta > 0:
                values["last_seen"] = sa.case((table.c.last_seen < seen_at, seen_at),
                                              else_=table.c.last_seen)
                values["first_seen"] = sa.case((table.c.first_seen > seen_at, seen_at),
                                               else_=table.c.first_seen)
            conn.execute(sa.update(table).where(table.c.id == key).values(**values))

    def record_failure(self, event_id: str, error: str, attempts: int, *,
                       dead_lettered: bool) -> None:
        """Remember an event that could not be analyzed (kept for metrics and inspection)."""
        now = datetime.now(UTC)
        stmt = self._insert(failures).values(event_id=event_id, error=error[:4000],
                                             attempts=attempts, dead_lettered=dead_lettered,
                                             last_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[failures.c.event_id],
            set_={"error": error[:4000], "attempts": attempts,
                  "dead_lettered": dead_lettered, "last_at": now, "resolved_at": None},
        )
        with unavailable_as_retryable(self.safe_url), self.engine.begin() as conn:
            conn.execute(stmt)

    # -- reading ------------------------------------------------------------------------------

    def clusters(self, limit: int = 100) -> list[ClusterRow]:
        """Clusters, largest first (hosts and kernels from the per-cluster aggregates)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(clusters).order_by(clusters.c.count.desc(),
                                                             clusters.c.id).limit(limit)
                                ).mappings().all()
            ids = [r["id"] for r in rows]
            kernels: dict[str, list[str]] = {}
            if ids:
                for cid, kernel in conn.execute(
                        sa.select(cluster_kernels.c.cluster_id, cluster_kernels.c.kernel)
                        .where(cluster_kernels.c.cluster_id.in_(ids))):
                    kernels.setdefault(cid, []).append("?" if kernel == "unknown" else kernel)
        return [ClusterRow(
            id=r["id"], signature=r["signature_text"], panic_class=r["panic_class"],
            taint=r["taint"], findings=tuple(json.loads(r["findings"])), count=r["count"],
            hosts=int(r["hosts"]), kernels=tuple(sorted(kernels.get(r["id"], ()))),
            first_seen=_utc(r["first_seen"]) or r["first_seen"],
            last_seen=_utc(r["last_seen"]) or r["last_seen"], title=r["title"],
        ) for r in rows]

    def crashes(self, cluster_id: str, limit: int = 1000) -> list[CrashRow]:
        """The crashes of one cluster, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(crashes, signatures.c.text)
                .join(signatures, signatures.c.id == crashes.c.signature_id)
                .where(crashes.c.cluster_id == cluster_id)
                .order_by(crashes.c.analyzed_at.desc()).limit(limit)).all()
        return [CrashRow(event_id=r.event_id, host=r.host, kernel_release=r.kernel_release,
                         crash_time=_utc(r.crash_time),
                         analyzed_at=_utc(r.analyzed_at) or r.analyzed_at, signature=r.text,
                         dump_key=r.dump_key, report_key=r.report_key, title=r.title)
                for r in rows]

    def explanation(self, event_id: str) -> dict[str, Any] | None:
        """How the signature and title of one stored crash were made (None: not stored)."""
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(crashes.c.explanation).where(
                crashes.c.event_id == event_id)).scalar_one_or_none()
        return json.loads(raw) if raw else None

    def stats(self, top_clusters: int = 10) -> StoreStats:
        """Counts for the metrics collector; the top clusters by count, the rest as other.
        Summed by the database over the clusters table and the per-cluster aggregates (a
        few rows come back, whatever the number of clusters): a scrape costs about the same
        at a thousand crashes as at a million."""
        c = clusters
        with self.engine.connect() as conn:
            by_class = {str(k): int(n) for k, n in conn.execute(
                sa.select(c.c.panic_class, sa.func.sum(c.c.count)).group_by(c.c.panic_class))}
            by_flag: dict[str, int] = {}
            for taint, n in conn.execute(sa.select(c.c.taint, sa.func.sum(c.c.count))
                                         .group_by(c.c.taint)):
                for ch in taint:  # a cluster's crashes all carry its taint letters
                    by_flag[ch] = by_flag.get(ch, 0) + int(n)
            unload: dict[str, int] = {}
            for findings, n in conn.execute(
                    sa.select(c.c.findings, sa.func.sum(c.c.count))
                    .where(c.c.findings.like("%use-after-module-unload(%"))
                    .group_by(c.c.findings)):
                for f in json.loads(findings):
                    if isinstance(f, str) and f.startswith("use-after-module-unload("):
                        mod = f[len("use-after-module-unload("):-1] or "unknown"
                        unload[mod] = unload.get(mod, 0) + int(n)
            by_arch = {str(a): int(n) for a, n in conn.execute(
                sa.select(cluster_arches.c.arch, sa.func.sum(cluster_arches.c.count))
                .group_by(cluster_arches.c.arch))}
            by_kernel = {str(k): int(n) for k, n in conn.execute(
                sa.select(kernel_counts.c.kernel, kernel_counts.c.count))}
            n_clusters, n_crashes = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(c.c.count), 0))).one()
            top = conn.execute(sa.select(c.c.id, c.c.count, c.c.signature_text)
                               .order_by(c.c.count.desc(), c.c.id).limit(top_clusters)).all()
            clusters_top = {str(cid): int(n) for cid, n, _ in top}
            rest = int(n_crashes) - sum(clusters_top.values())
            if rest:
                clusters_top["other"] = rest
            n_fail, n_dead = conn.execute(sa.select(
                sa.func.count(), sa.func.count().filter(failures.c.dead_lettered))).one()
            return StoreStats(
                crashes_by_class=by_class, crashes_by_taint_flag=by_flag,
                crashes_by_kernel=by_kernel, crashes_by_cluster=clusters_top,
                module_unload_by_module=_top(unload, top_clusters),
                signatures=conn.execute(sa.select(sa.func.count()).select_from(signatures))
                .scalar_one(),
                clusters=int(n_clusters),
                taint_sets=conn.execute(sa.select(sa.func.count()).select_from(taint_sets))
                .scalar_one(),
                failures=int(n_fail), dead_lettered=int(n_dead),
                regressed=conn.execute(sa.select(sa.func.count()).select_from(triage).where(
                    triage.c.state == "fixed", triage.c.regressed_at.is_not(None)))
                .scalar_one(),
                crashes_by_arch=by_arch,
                cluster_signatures={str(cid): str(text) for cid, _, text in top},
            )

    # -- triage -------------------------------------------------------------------------------

    def set_triage(self, cluster_id: str, state: str, *, fixed_in: str | None = None,
                   note: str = "", who: str = "", now: datetime | None = None
                   ) -> TriageState | None:
        """Set a cluster's triage state; None when there is no such cluster. Raises
        :class:`~store.triage.TriageError` for an invalid change."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(clusters.c.id).where(clusters.c.id == cluster_id)
                            ).first() is None:
                return None
            return write_triage(conn, cluster_id, state, fixed_in=fixed_in, note=note,
                                who=who, now=now or datetime.now(UTC))

    def triage_state(self, cluster_id: str) -> TriageState:
        """A cluster's triage state (open when never set)."""
        with self.engine.connect() as conn:
            found = read_triage(conn, [cluster_id]).get(cluster_id)
        return found or TriageState(cluster_id, "open", None, "", "", None)

    def counts(self) -> dict[str, int]:
        """Row counts per table (for tests and status output)."""
        with self.engine.connect() as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                    for t in (crashes, signatures, clusters, taint_sets, failures)}


def _top(counts: dict[str, int], k: int) -> dict[str, int]:
    """The ``k`` largest counts by name, the rest summed as ``other`` (bounded labels)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ranked[:k])
    if len(ranked) > k:
        out["other"] = out.get("other", 0) + sum(n for _, n in ranked[k:])
    return out


def crash_arch(arch: str | None) -> str:
    """The stored architecture of a crash: the report's (bounded), "unknown" when absent."""
    return (arch or "unknown")[:16]


def _resolve_failure(conn: sa.Connection, event_id: str, now: datetime) -> None:
    """A stored event resolves its failure row, if any (a replayed dead letter)."""
    conn.execute(sa.update(failures).where(failures.c.event_id == event_id,
                                           failures.c.resolved_at.is_(None))
                 .values(resolved_at=now))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _serialize_placement(conn: sa.Connection, sig: Signature) -> None:
    """Make crashes that could share a cluster be placed one after the other, across
    processes: the lock is held until the transaction ends, so the next placement reads the
    cluster this one creates. PostgreSQL: an advisory lock on the cluster key. SQLite: the
    database's write lock, taken now by a write that changes nothing (one writer at a time)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _cluster_key_lock(sig)})
    elif conn.dialect.name == "sqlite":
        conn.execute(sa.text("UPDATE clusters SET count = count WHERE 0"))


def _cluster_key_lock(sig: Signature) -> int:
    """The advisory-lock key (signed 64-bit) of the clusters a crash could join: those with
    its panic class, taint and findings."""
    key = json.dumps([sig.panic_class, sig.taint, list(sig.findings)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big", signed=True)
