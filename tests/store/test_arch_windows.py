"""The architecture facet and the window counts on real engines (SQLite file, PostgreSQL).

The committed dumps are x86_64 only, so the arch facet is exercised with crashes recorded as
the analyzer records them for both architectures: the same module bug on an x86_64 and an
arm64 host is one cluster with both architectures counted. Window counts kept by the write
path after a window was built equal a rebuild from the daily counts, also when a re-analysis
moves a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from signature import Finding, Frame, SignatureInput, compute_signature
from store import CrashRecord, CrashStore
from store.history import reclassify
from store.schema import cluster_arches, cluster_windows, crashes, window_state
from store.views import ClusterQuery, cluster_detail, list_clusters
from store.windows import ensure_windows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
UAU = compute_signature(SignatureInput(
    "page_fault", Frame(None), (), "OE", (Finding("use-after-module-unload", "vendordeferio"),)))
NULL = compute_signature(SignatureInput(
    "page_fault", Frame("ring_poll", "vendor"), (Frame("ring_init", "vendor"),), "OE",
    (Finding("null-pointer-dereference"),)))
SYSRQ = compute_signature(SignatureInput("sysrq", Frame("sysrq_handle_crash"),
                                         (Frame("__handle_sysrq"),), ""))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CrashStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    else:
        dsn: str = request.getfixturevalue("postgres_db")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    s = CrashStore(url)
    s.migrate()
    return s


def rec(event: str, sig: object, arch: str | None, *, days_ago: float = 0,
        host: str = "h") -> CrashRecord:
    at = NOW - timedelta(days=days_ago)
    kernel = "6.12.57+deb13-cloud-arm64" if arch == "arm64" else "6.12.57+deb13-cloud-amd64"
    return CrashRecord(
        event_id=event, host=host, machine_id=f"m-{host}", kernel_release=kernel,
        build_id=None, crash_time=at, analyzed_at=at, dump_key=None, report_key=None,
        signature=sig,  # type: ignore[arg-type]
        findings=tuple({"kind": f.split("(")[0], "module": f.split("(")[1][:-1] if "(" in f
                        else None} for f in sig.findings),  # type: ignore[attr-defined]
        partial=False, arch=arch)


def test_arch_is_a_facet_not_part_of_the_key(store: CrashStore) -> None:
    store.record(rec("x1", UAU, "x86_64", host="amd-1"))
    store.record(rec("a1", UAU, "arm64", host="graviton-1", days_ago=1))
    store.record(rec("a2", UAU, "arm64", host="graviton-2", days_ago=2))
    store.record(rec("a3", NULL, "arm64", host="graviton-1"))
    store.record(rec("u1", SYSRQ, None, host="lab-1"))  # the report could not tell
    store.record(rec("a1", UAU, "arm64", host="graviton-1", days_ago=1))  # redelivery
    with store.engine.connect() as conn:
        arches = {(c, a): n for c, a, n in conn.execute(sa.select(
            cluster_arches.c.cluster_id, cluster_arches.c.arch, cluster_arches.c.count))}
        stored = dict(conn.execute(sa.select(crashes.c.event_id, crashes.c.arch)).all())
    assert arches == {(UAU.id, "x86_64"): 1, (UAU.id, "arm64"): 2, (NULL.id, "arm64"): 1,
                      (SYSRQ.id, "unknown"): 1}
    assert stored == {"x1": "x86_64", "a1": "arm64", "a2": "arm64", "a3": "arm64",
                      "u1": "unknown"}
    q = ClusterQuery(window="all")
    page = list_clusters(store.engine, q, now=NOW)
    assert {c.id: c.arches for c in page.rows} == {
        UAU.id: ("arm64", "x86_64"), NULL.id: ("arm64",), SYSRQ.id: ("unknown",)}
    for arch, want in (("arm64", {UAU.id, NULL.id}), ("x86_64", {UAU.id}), ("riscv64", set())):
        got = list_clusters(store.engine, ClusterQuery(window="30d", arch=arch), now=NOW)
        assert {c.id for c in got.rows} == want and got.total == len(want), arch
    d = cluster_detail(store.engine, UAU.id, now=NOW)
    assert d is not None and d.facets["arch"] == (("arm64", 2), ("x86_64", 1))
    assert d.facet_totals["arch"] == 2
    assert {c.event_id: c.arch for c in d.crashes} == {"x1": "x86_64", "a1": "arm64",
                                                      "a2": "arm64"}
    st = store.stats()
    assert st.crashes_by_arch == {"x86_64": 1, "arm64": 3, "unknown": 1}
    store.dispose()


def test_collector_exports_crashes_by_arch(store: CrashStore) -> None:
    from analyzer.metrics import StoreCollector

    store.record(rec("x1", UAU, "x86_64"))
    store.record(rec("a1", UAU, "arm64"))
    store.record(rec("a2", NULL, "arm64"))
    samples = {tuple(s.labels.items()): s.value
               for m in StoreCollector(store).collect() if m.name == "crashfleet_crashes_by_arch"
               for s in m.samples if s.name.endswith("_total")}
    assert samples == {(("arch", "arm64"),): 2, (("arch", "x86_64"),): 1}
    store.dispose()


def _windows(store: CrashStore) -> dict[tuple[int, str], tuple[int, int]]:
    with store.engine.connect() as conn:
        return {(d, c): (cur, prev) for d, c, cur, prev in conn.execute(sa.select(
            cluster_windows.c.days, cluster_windows.c.cluster_id, cluster_windows.c.cur,
            cluster_windows.c.prev)) if cur or prev}


def _rebuilt(store: CrashStore, days: tuple[int, ...]) -> dict[tuple[int, str], tuple[int, int]]:
    with store.engine.begin() as conn:
        conn.execute(sa.delete(window_state))
    for d in days:
        ensure_windows(store.engine, d, NOW.date())
    return _windows(store)


def test_window_counts_kept_by_the_write_path_equal_a_rebuild(store: CrashStore) -> None:
    store.record(rec("e1", UAU, "x86_64", days_ago=0))
    store.record(rec("e2", NULL, "x86_64", days_ago=10))
    first = list_clusters(store.engine, ClusterQuery(window="7d"), now=NOW)
    assert [(c.id, c.window_count, c.previous_count) for c in first.rows] == [(UAU.id, 1, 0)]
    list_clusters(store.engine, ClusterQuery(window="30d"), now=NOW)
    # Crashes after the windows were built: inside, in the window before, and outside both.
    for i, days_ago in enumerate((0, 1, 3, 6.9, 7.5, 13, 20, 45, 70)):
        store.record(rec(f"n{i}", NULL, "arm64", days_ago=days_ago))
    store.record(rec("s1", SYSRQ, "x86_64", days_ago=8))
    kept = _windows(store)
    # Days 11-24..11-30 and 11-17..11-23: 0, 1, 3 days ago | 6.9, 7.5, 10, 13 days ago.
    assert kept[(7, NULL.id)] == (3, 4) and kept[(7, SYSRQ.id)] == (0, 1)
    page = list_clusters(store.engine, ClusterQuery(window="7d"), now=NOW)
    assert [(c.id, c.window_count, c.previous_count) for c in page.rows] == [
        (NULL.id, 3, 4), (UAU.id, 1, 0)]
    # A re-analysis that moves a crash to another cluster moves its window counts too.
    moved = rec("n1", UAU, "arm64", days_ago=1)
    assert reclassify(store, moved, "req-1") is not None
    kept = _windows(store)
    assert kept[(7, NULL.id)] == (2, 4) and kept[(7, UAU.id)] == (2, 0)
    assert kept == _rebuilt(store, (7, 30))
    # A new day: the first reader rebuilds the window, once.
    tomorrow = NOW + timedelta(days=1)
    later = list_clusters(store.engine, ClusterQuery(window="7d"), now=tomorrow)
    assert {c.id: c.window_count for c in later.rows} == {NULL.id: 2, UAU.id: 2}
    with store.engine.connect() as conn:
        assert dict(conn.execute(sa.select(window_state.c.days, window_state.c.as_of)).all())[
            7] in (tomorrow.date(), tomorrow.date().isoformat())
    store.dispose()


def test_migration_backfills_arch_from_the_kernel_release(tmp_path: Path) -> None:
    """Crashes stored before 0005_arch: arm64 when the kernel release says so, else x86_64;
    their per-cluster arch counts as the write path would have kept them."""
    live = CrashStore(f"sqlite:///{tmp_path / 'live.sqlite'}")
    live.migrate()
    for event, sig, arch in (("x1", UAU, "x86_64"), ("a1", UAU, "arm64"), ("a2", NULL, "arm64")):
        live.record(rec(event, sig, arch))
    old = CrashStore(f"sqlite:///{tmp_path / 'old.sqlite'}")
    old.migrate("0003_faults")
    from store.schema import clusters, signatures, taint_sets

    with live.engine.connect() as src, old.engine.begin() as dst:
        for t in (clusters, signatures, crashes, taint_sets):
            then = sa.Table(t.name, sa.MetaData(), autoload_with=dst)
            assert t.name != "crashes" or "arch" not in then.c
            dst.execute(then.insert(), [{k: v for k, v in r._mapping.items() if k in then.c}
                                        for r in src.execute(sa.select(t))])
    old.migrate()
    with old.engine.connect() as conn:
        assert dict(conn.execute(sa.select(crashes.c.event_id, crashes.c.arch)).all()) == {
            "x1": "x86_64", "a1": "arm64", "a2": "arm64"}
        assert sorted(conn.execute(sa.select(cluster_arches.c.cluster_id, cluster_arches.c.arch,
                                             cluster_arches.c.count)).all()) == sorted(
            [(UAU.id, "x86_64", 1), (UAU.id, "arm64", 1), (NULL.id, "arm64", 1)])
    live.dispose()
    old.dispose()


def test_window_counts_stay_exact_while_rebuilds_race_writers(store: CrashStore) -> None:
    """Writers record crashes while a reader rebuilds the 7-day window again and again (each
    call a different day, so each one rebuilds): at the end the kept counts equal a rebuild,
    so no crash was counted twice or lost between a rebuild and a writer."""
    import threading

    ensure_windows(store.engine, 7, NOW.date())
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(40):
                sig = (UAU, NULL, SYSRQ)[i % 3]
                store.record(rec(f"w{i}", sig, "x86_64", days_ago=(i % 16) * 0.9,
                                 host=f"h{i % 5}"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    flip = 0
    while not done.is_set():
        flip ^= 1
        ensure_windows(store.engine, 7, (NOW + timedelta(days=flip)).date())
    writer.join()
    assert errors == []
    with store.engine.connect() as conn:
        as_of = conn.execute(sa.select(window_state.c.as_of)).scalar_one()
    kept = _windows(store)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(window_state))
    day = as_of if not isinstance(as_of, str) else datetime.fromisoformat(as_of).date()
    ensure_windows(store.engine, 7, day)
    assert kept == _windows(store) and sum(c for c, _ in kept.values()) > 0
    store.dispose()
