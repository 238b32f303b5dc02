"""The web read model on real engines (SQLite file, PostgreSQL): aggregates kept by the write
path, the migration's backfill of crashes stored before it, triage and regressions, and the
cluster list's filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from signature import Finding, Frame, SignatureInput, compute_signature
from store import CrashRecord, CrashStore
from store.aggregates import kernel_key, modules_of
from store.schema import (
    cluster_days,
    cluster_hosts,
    cluster_kernels,
    cluster_modules,
    cluster_taints,
    clusters,
    crashes,
    kernel_counts,
    signatures,
    taint_sets,
)
from store.views import ClusterQuery, cluster_detail, host_crashes, list_clusters

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
UAU = compute_signature(SignatureInput(
    "page_fault", Frame(None), (), "GOE", (Finding("use-after-module-unload", "veeamsnap"),)))
NULL = compute_signature(SignatureInput(
    "page_fault", Frame("ring_poll", "vendor"), (Frame("ring_init", "vendor"),), "GOE",
    (Finding("null-pointer-dereference"),)))
AGGREGATES = (cluster_days, cluster_kernels, cluster_hosts, cluster_taints, cluster_modules)


def _url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    dsn: str = request.getfixturevalue("postgres_db")
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, tmp_path, "a.sqlite")


def rec(event: str, sig: object, host: str, kernel: str | None, days: float) -> CrashRecord:
    at = T0 + timedelta(days=days)
    return CrashRecord(
        event_id=event, host=host, machine_id=f"m-{host}", kernel_release=kernel,
        build_id=None, crash_time=at, analyzed_at=at, dump_key=None,
        report_key=f"r/{event}", signature=sig,  # type: ignore[arg-type]
        findings=tuple({"kind": f.split("(")[0], "module": f.split("(")[1][:-1] if "(" in f
                        else None} for f in sig.findings),  # type: ignore[attr-defined]
        partial=False)


PLAN = [("e1", UAU, "a", "5.10.0-32-cloud-amd64", 0), ("e2", UAU, "b", "6.1.0-56-cloud-amd64", 1),
        ("e3", UAU, "b", "6.1.0-56-cloud-amd64", 1.2), ("e4", NULL, "c", None, 2),
        ("e5", NULL, "c", "6.1.0-56-cloud-amd64", 2.1)]


def _aggregates(store: CrashStore) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for t in AGGREGATES:
            rows = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
            out[t.name] = [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else
                                 str(v) for v in r) for r in rows]
    return out


def test_write_path_keeps_the_aggregates(url: str) -> None:
    store = CrashStore(url)
    store.migrate()
    for args in PLAN:
        store.record(rec(*args))  # type: ignore[arg-type]
    store.record(rec(*PLAN[0]))  # type: ignore[arg-type]  # a redelivery changes nothing
    agg = _aggregates(store)
    assert [(r[1], r[2]) for r in agg["cluster_kernels"] if r[0] == UAU.id] == [
        ("5.10.0-32-cloud-amd64", "1"), ("6.1.0-56-cloud-amd64", "2")]
    assert [(r[1], r[2]) for r in agg["cluster_hosts"] if r[0] == NULL.id] == [("c", "2")]
    assert {r[1] for r in agg["cluster_modules"] if r[0] == NULL.id} == {"vendor"}
    assert {r[1] for r in agg["cluster_modules"] if r[0] == UAU.id} == {"veeamsnap"}
    assert [r[1:] for r in agg["cluster_days"] if r[0] == UAU.id] == [
        ("2026-11-25", "1"), ("2026-11-26", "2")]
    (top, other) = store.clusters()
    assert (top.id, top.count, top.hosts) == (UAU.id, 3, 2)
    assert other.kernels == ("6.1.0-56-cloud-amd64", "?")
    now = T0 + timedelta(days=3)
    page = list_clusters(store.engine, ClusterQuery(window="7d"), now=now)
    assert [c.id for c in page.rows] == [UAU.id, NULL.id] and page.total == 2
    assert list_clusters(store.engine, ClusterQuery(window="1d"), now=now).total == 0
    assert [c.id for c in list_clusters(store.engine, ClusterQuery(
        window="all", kernel="5.10.0-32-cloud-amd64"), now=now).rows] == [UAU.id]
    d = cluster_detail(store.engine, NULL.id, now=now)
    assert d is not None and d.facets["kernel"] == (("6.1.0-56-cloud-amd64", 1), ("unknown", 1))
    assert d.similar == ()
    assert host_crashes(store.engine, "b")[0] == 2
    store.dispose()


def test_migration_counts_crashes_stored_before_it(url: str, tmp_path: Path) -> None:
    """Crashes stored under revision 0001 (no aggregates) are counted by 0002_web exactly as
    the write path counts new ones."""
    live = CrashStore(f"sqlite:///{tmp_path / 'live.sqlite'}")
    live.migrate()
    for args in PLAN:
        live.record(rec(*args))  # type: ignore[arg-type]
    old = CrashStore(url)
    old.migrate("0001")
    with live.engine.connect() as src, old.engine.begin() as dst:
        for t in (clusters, signatures, crashes, taint_sets):
            then = sa.Table(t.name, sa.MetaData(), autoload_with=dst)  # as 0001 made it
            rows = [{k: v for k, v in r._mapping.items() if k in then.c}
                    for r in src.execute(sa.select(t))]
            dst.execute(then.insert(), rows)
    old.migrate()
    assert _aggregates(old) == _aggregates(live)
    for s in (old, live):
        with s.engine.connect() as conn:
            assert dict(conn.execute(sa.select(clusters.c.id, clusters.c.hosts)).all()) == {
                UAU.id: 2, NULL.id: 1}
            assert dict(conn.execute(sa.select(kernel_counts.c.kernel,
                                               kernel_counts.c.count)).all()) == {
                "5.10.0-32-cloud-amd64": 1, "6.1.0-56-cloud-amd64": 3, "unknown": 1}
    live.dispose()
    old.dispose()


def test_triage_and_regression(url: str) -> None:
    store = CrashStore(url)
    store.migrate()
    for args in PLAN:
        store.record(rec(*args))  # type: ignore[arg-type]
    assert store.triage_state(UAU.id).state == "open"
    assert store.set_triage("0123456789abcdef", "ignored") is None
    t = store.set_triage(UAU.id, "fixed", fixed_in="6.1.0-60-cloud-amd64", note="n", who="w",
                         now=T0 + timedelta(days=3))
    assert t is not None and not t.regressed
    store.record(rec("e6", UAU, "d", "6.1.0-56-cloud-amd64", 4))  # older kernel: no
    assert not store.triage_state(UAU.id).regressed
    store.record(rec("e7", UAU, "d", "6.1.0-61-cloud-amd64", 5))
    st = store.triage_state(UAU.id)
    assert st.regressed and st.regressed_kernel == "6.1.0-61-cloud-amd64"
    assert store.stats().regressed == 1
    store.set_triage(UAU.id, "open", now=T0 + timedelta(days=6))  # re-triaged: cleared
    assert store.stats().regressed == 0
    store.dispose()


@pytest.mark.parametrize(("older", "newer"), [
    ("5.10.0-32-cloud-amd64", "6.1.0-56-cloud-amd64"),
    ("6.1.0-56-cloud-amd64", "6.1.0-57-cloud-amd64"),
    ("6.1.0-9-amd64", "6.1.0-10-amd64"),
    ("6.9.0", "6.12.0"),
    ("6.12.0-rc1", "6.12.0-1"),
])
def test_kernel_order(older: str, newer: str) -> None:
    assert kernel_key(older) < kernel_key(newer)


def test_modules_of_frames_and_findings() -> None:
    assert modules_of(["fn [a]", "g", "h [b]", "i [a]"], [{"module": "c"}, {"module": None},
                                                         {"kind": "x"}]) == ["a", "b", "c"]
