"""The crash store on real engines: an SQLite file and a PostgreSQL database."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signature import Finding, Frame, SignatureInput, compute_signature
from signature.titles import Title
from store import CrashRecord, CrashStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CrashStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'crashes.sqlite'}"
    else:
        dsn: str = request.getfixturevalue("postgres_db")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    s = CrashStore(url)
    s.migrate()
    s.migrate()  # idempotent
    request.addfinalizer(s.dispose)
    return s


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

UAU = compute_signature(SignatureInput(
    "page_fault", Frame(None), (), "GOE", (Finding("use-after-module-unload", "veeamsnap"),)))
NULL = compute_signature(SignatureInput(
    "page_fault", Frame("ring_poll", "vendor"), (Frame("ring_init", "vendor"),), "GOE",
    (Finding("null-pointer-dereference"),)))
SYSRQ = compute_signature(SignatureInput("sysrq", Frame("sysrq_handle_crash"),
                                         (Frame("__handle_sysrq"),), "G"))


def rec(event: str, sig: object, host: str = "h1", kernel: str = "6.1.0-56-cloud-amd64",
        minutes: int = 0) -> CrashRecord:
    assert hasattr(sig, "id")
    return CrashRecord(
        event_id=event, host=host, machine_id=f"m-{host}", kernel_release=kernel,
        build_id=None, crash_time=T0 + timedelta(minutes=minutes),
        analyzed_at=T0 + timedelta(minutes=minutes + 1), dump_key=f"dumps/{event}",
        report_key=f"dumps/{event}.report.json", signature=sig,  # type: ignore[arg-type]
        findings=tuple({"kind": f.split("(")[0], "module": f.split("(")[1][:-1] if "(" in f
                        else None} for f in sig.findings),  # type: ignore[attr-defined]
        partial=False)


def test_record_is_idempotent_and_clusters_count_hosts_and_kernels(store: CrashStore) -> None:
    first = store.record(rec("e1", UAU, host="a", kernel="5.10.0-32-cloud-amd64"))
    assert first.inserted and first.new_signature and first.new_cluster
    again = store.record(rec("e1", UAU, host="a", kernel="5.10.0-32-cloud-amd64"))
    assert not again.inserted and again.cluster_id == first.cluster_id
    second = store.record(rec("e2", UAU, host="b", minutes=5))
    assert second.inserted and not second.new_signature and not second.new_cluster
    store.record(rec("e3", SYSRQ, host="c", minutes=9))
    (top, other) = store.clusters()
    assert (top.count, top.hosts) == (2, 2)
    assert top.kernels == ("5.10.0-32-cloud-amd64", "6.1.0-56-cloud-amd64")
    assert top.findings == ("use-after-module-unload(veeamsnap)",)
    assert top.first_seen == T0 and top.last_seen == T0 + timedelta(minutes=5)
    assert other.count == 1 and other.panic_class == "sysrq"
    assert [c.event_id for c in store.crashes(top.id)] == ["e2", "e1"]
    assert store.counts()["crashes"] == 3


def _titled(event: str, frames: tuple[str, ...], text: str, alt: str) -> CrashRecord:
    sig = compute_signature(SignatureInput("kernel_bug", Frame(frames[0], "m"),
                                           tuple(Frame(f) for f in frames[1:]), "GOE"))
    title = Title(text, "kernel_bug", 30, "class: kernel_bug", frames[0] + " [m]", (alt,))
    return dataclasses.replace(rec(event, sig), title=title,
                               explanation={"title": {"text": text}})


def test_titles_and_explanations_are_stored_and_alternative_titles_join(
        store: CrashStore) -> None:
    a = store.record(_titled("t1", ("free_ring", "ring_init", "do_one_initcall"),
                             "kernel BUG at ring.c:10 in free_ring [m]", "kernel BUG in free_ring"))
    # The same function reached through another path on another build: frames unalike.
    b = store.record(_titled("t2", ("free_ring", "ring_worker", "process_one_work", "kthread"),
                             "kernel BUG at ring.c:12 in free_ring [m]", "kernel BUG in free_ring"))
    c = store.record(_titled("t3", ("free_pool", "pool_worker", "process_one_work", "kthread"),
                             "kernel BUG at pool.c:3 in free_pool [m]", "kernel BUG in free_pool"))
    assert b.cluster_id == a.cluster_id and c.cluster_id != a.cluster_id
    titles = {r.id: r.title for r in store.clusters()}
    assert titles[a.cluster_id] == "kernel BUG at ring.c:10 in free_ring [m]"
    assert sorted(r.title or "" for r in store.crashes(a.cluster_id)) == [
        "kernel BUG at ring.c:10 in free_ring [m]", "kernel BUG at ring.c:12 in free_ring [m]"]
    assert store.explanation("t2") == {
        "title": {"text": "kernel BUG at ring.c:12 in free_ring [m]"}}
    assert store.explanation("nope") is None


def test_new_taint_letters_and_sets(store: CrashStore) -> None:
    a = store.record(rec("e1", SYSRQ))
    assert a.new_taint_set and a.new_taint_letters == ()  # untainted: no letters
    b = store.record(rec("e2", NULL))
    assert b.new_taint_set and b.new_taint_letters == ("E", "O")
    c = store.record(rec("e3", UAU))
    assert not c.new_taint_set and c.new_taint_letters == ()


def test_stats_for_metrics(store: CrashStore) -> None:
    store.record(rec("e1", UAU, host="a"))
    store.record(rec("e2", UAU, host="b"))
    store.record(rec("e3", NULL))
    store.record_failure("e9", "truncated dump at offset 4096", 3, dead_lettered=True)
    store.record_failure("e8", "S3 unreachable", 1, dead_lettered=False)
    st = store.stats(top_clusters=1)
    assert st.crashes_by_class == {"page_fault": 3}
    assert st.crashes_by_taint_flag == {"E": 3, "O": 3}
    assert st.module_unload_by_module == {"veeamsnap": 2}
    assert st.crashes_by_cluster == {UAU.id: 2, "other": 1}
    assert (st.signatures, st.clusters, st.failures, st.dead_lettered) == (2, 2, 2, 1)


def test_collector_bounds_labels_to_top_k(store: CrashStore) -> None:
    """What Prometheus scrapes from the store: one sample per label value, kernels and
    clusters beyond the top K summed as ``other``."""
    from analyzer.metrics import StoreCollector

    store.record(rec("e1", UAU, host="a", kernel="6.1.0-56-cloud-amd64"))
    store.record(rec("e2", UAU, host="b", kernel="6.1.0-56-cloud-amd64"))
    store.record(rec("e3", NULL, kernel="5.10.0-32-cloud-amd64"))
    store.record(rec("e4", SYSRQ, kernel="6.12.118+deb13-cloud-amd64"))
    samples = {(m.name, tuple(sorted(s.labels.items()))): s.value
               for m in StoreCollector(store, top_k=1).collect() for s in m.samples
               if not s.name.endswith("_created")}
    kernel = "crashfleet_crashes_by_kernel"
    assert {k[1]: v for k, v in samples.items() if k[0] == kernel} == {
        (("kernel", "6.1.0-56-cloud-amd64"),): 2, (("kernel", "other"),): 2}
    assert {k[1]: v for k, v in samples.items() if k[0] == "crashfleet_cluster_crashes"} == {
        (("cluster", UAU.id),): 2, (("cluster", "other"),): 2}
    assert samples[("crashfleet_crashes", (("panic_class", "page_fault"),))] == 3
    assert samples[("crashfleet_crashes", (("panic_class", "sysrq"),))] == 1
    assert samples[("crashfleet_module_unload_crashes", (("module", "veeamsnap"),))] == 2
    assert samples[("crashfleet_crashes_by_taint_flag", (("flag", "E"),))] == 3


def test_concurrent_redelivery_counts_once(store: CrashStore) -> None:
    errors: list[BaseException] = []
    outcomes = []

    def worker() -> None:
        try:
            outcomes.append(store.record(rec("same", UAU)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if store.engine.dialect.name == "sqlite":
        # SQLite serializes writers; a writer may still find the database locked briefly.
        errors = [e for e in errors if "locked" not in str(e)]
    assert not errors
    assert sum(o.inserted for o in outcomes) == 1
    (cluster,) = store.clusters()
    assert cluster.count == 1


def test_concurrent_migrations_on_a_fresh_database(postgres_db: str) -> None:
    """Analyzers starting together all migrate; exactly one creates the schema."""
    url = postgres_db.replace("postgresql://", "postgresql+psycopg://", 1)
    errors: list[BaseException] = []

    def migrate() -> None:
        s = CrashStore(url)
        try:
            s.migrate()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            s.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = CrashStore(url)
    assert s.counts()["crashes"] == 0
    s.dispose()


def test_similar_crashes_placed_at_once_share_one_cluster(store: CrashStore) -> None:
    """Crashes that differ in one frame (a joinable signature each) recorded at the same time
    — an analyzer with several events in flight, or several analyzers — end in one cluster:
    placements are serialized (a lock in the process, an advisory lock in PostgreSQL), so
    none misses the cluster another has just created."""
    sigs = [compute_signature(SignatureInput(
        "page_fault", Frame("ring_poll", "vendor"),
        (Frame("ring_init", "vendor"), Frame("do_one_initcall"), Frame("do_init_module"),
         Frame(f"loader_{i}")), "GOE", (Finding("null-pointer-dereference"),)))
        for i in range(8)]
    assert len({s.id for s in sigs}) == 8
    # A second store object on the same database stands for another analyzer process.
    other = CrashStore(store.url)
    start = threading.Barrier(8)
    outcomes = []

    def place(i: int) -> None:
        start.wait()
        outcomes.append((store if i % 2 else other).record(rec(f"e{i}", sigs[i], host=f"h{i}")))

    threads = [threading.Thread(target=place, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    assert all(o.inserted for o in outcomes)
    assert len({o.cluster_id for o in outcomes}) == 1
    assert sum(o.new_cluster for o in outcomes) == 1
