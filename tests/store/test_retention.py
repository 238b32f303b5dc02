"""Retention on real engines (an SQLite file, a PostgreSQL database): old crashes go with their
history and objects; clusters, signatures, every per-cluster aggregate and the metrics
collector's numbers stay exactly as they were; a prune stopped half-way (objects deleted, rows
not) is finished by the next run; a second run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crashfleet.cli import main
from ingest.localstore import LocalObjectStore
from store import CrashStore
from store.history import reclassify
from store.retention import objects_of, prune
from store.schema import crash_history, crashes, metadata

from .test_store import NULL, SYSRQ, T0, UAU, rec

DAY = 24 * 60
# Three crashes on day 0 (one of them re-analyzed), two on day 40.
OLD = [("o1", UAU, "a", 0), ("o2", UAU, "b", 10), ("o3", NULL, "a", 20)]
NEW = [("n1", UAU, "c", 40 * DAY), ("n2", SYSRQ, "a", 40 * DAY + 5)]
NOW = T0 + timedelta(days=45)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CrashStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crashfleet.sqlite'}"
    else:
        dsn: str = request.getfixturevalue("postgres_db")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    s = CrashStore(url)
    s.migrate()
    request.addfinalizer(s.dispose)
    return s


def _fill(store: CrashStore, objects: LocalObjectStore) -> None:
    for event, sig, host, minutes in OLD + NEW:
        r = rec(event, sig, host=host, minutes=minutes)
        store.record(r)
        for key in objects_of(r.dump_key, r.report_key):
            objects.put(key, b"x")
    assert reclassify(store, rec("o1", NULL, host="a"), "req-1") is not None


def _totals(store: CrashStore) -> dict[str, Any]:
    """Everything but the crashes and their history, row by row, and the collector's view."""
    out: dict[str, Any] = {}
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in ("crashes", "crash_history", "alembic_version"):
                continue
            out[table.name] = sorted(tuple(map(str, row)) for row in conn.execute(
                sa.select(table)))
    out["stats"] = store.stats()
    out["clusters"] = store.clusters()
    return out


def _keys(objects: LocalObjectStore) -> set[str]:
    return {o.key for o in objects.list_objects()}


def test_prune_keeps_every_total_and_deletes_rows_history_and_objects(
        store: CrashStore, tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    _fill(store, objects)
    before, keys_before = _totals(store), _keys(objects)
    assert sum(c.count for c in before["clusters"]) == 5

    dry = prune(store.engine, older_than=timedelta(days=30), remover=objects, now=NOW,
                dry_run=True, batch=2)
    assert (dry.crashes, dry.objects, dry.batches) == (3, 3 * 4, 2)  # keyset pages
    assert store.counts()["crashes"] == 5 and _keys(objects) == keys_before

    done = prune(store.engine, older_than=timedelta(days=30), remover=objects, now=NOW,
                 batch=2)
    assert (done.crashes, done.objects, done.batches, done.complete) == (3, 12, 2, True)
    with store.engine.connect() as conn:
        kept = {e for (e,) in conn.execute(sa.select(crashes.c.event_id))}
        history = conn.execute(sa.select(sa.func.count()).select_from(crash_history)
                               ).scalar_one()
    assert kept == {"n1", "n2"} and history == 0
    assert _totals(store) == before  # clusters, aggregates, metrics: not a number moved
    kept_keys = {k for e, s, h, m in NEW for k in objects_of(
        rec(e, s, host=h, minutes=m).dump_key, rec(e, s, host=h, minutes=m).report_key)}
    assert _keys(objects) == kept_keys

    again = prune(store.engine, older_than=timedelta(days=30), remover=objects, now=NOW)
    assert (again.crashes, again.objects) == (0, 0)
    assert _totals(store) == before


class _KilledAfter:
    """An object store whose process dies (an exception here) after ``n`` deletes."""

    def __init__(self, objects: LocalObjectStore, n: int):
        self.objects, self.n = objects, n

    def delete(self, key: str) -> None:
        if self.n == 0:
            raise KeyboardInterrupt("killed")
        self.n -= 1
        self.objects.delete(key)


def test_a_prune_killed_half_way_is_finished_by_the_next(
        store: CrashStore, tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    _fill(store, objects)
    before = _totals(store)
    # Batches of one crash (four objects each): killed in the second batch, after its
    # first two objects went and before its rows did.
    with pytest.raises(KeyboardInterrupt):
        prune(store.engine, older_than=timedelta(days=30), remover=_KilledAfter(objects, 6),
              now=NOW, batch=1)
    assert store.counts()["crashes"] == 4  # the first batch is done, the second not
    done = prune(store.engine, older_than=timedelta(days=30), remover=objects, now=NOW)
    assert done.crashes == 2
    assert store.counts()["crashes"] == 2 and _totals(store) == before
    assert len(_keys(objects)) == 2 * 4


def test_store_prune_command_on_an_embedded_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    store = CrashStore(f"sqlite:///{data / 'crashfleet.sqlite'}")
    store.migrate()
    objects = LocalObjectStore(data / "objects")
    _fill(store, objects)
    store.dispose()
    # OLD was stored in 2026-11, NEW in 2027-01 (still ahead, or not, as this runs).
    cutoff = datetime.now(UTC) - timedelta(days=1)
    old = sum(rec(e, s, minutes=m).analyzed_at < cutoff for e, s, _, m in OLD + NEW)
    monkeypatch.delenv("CRASHFLEET_CONFIG", raising=False)
    monkeypatch.delenv("CRASHFLEET_STORE_RETAIN_DAYS", raising=False)
    assert main(["store", "prune", "--data", str(data)]) == 2  # retain_days 0: refused
    assert "store.retain_days" in capsys.readouterr().err
    assert main(["store", "prune", "--data", str(data), "--older-than", "1", "--dry-run"]) == 0
    assert f"would prune {old} crashes" in capsys.readouterr().out
    monkeypatch.setenv("CRASHFLEET_STORE_PRUNE_OBJECTS", "true")
    assert main(["store", "prune", "--data", str(data), "--older-than", "1"]) == 0
    assert f"pruned {old} crashes" in capsys.readouterr().out
    assert len(_keys(objects)) == 4 * (5 - old)
    store = CrashStore(f"sqlite:///{data / 'crashfleet.sqlite'}")
    assert store.counts()["crashes"] == 5 - old and store.counts()["clusters"] == 3
    store.dispose()


def test_the_analyzer_prunes_periodically_while_retain_days_is_set(tmp_path: Path) -> None:
    import dataclasses
    import threading
    import time

    from crashfleet.wiring.analyzer import _start_pruner
    from foundation.settings import load_settings

    store = CrashStore(f"sqlite:///{tmp_path / 'crashfleet.sqlite'}")
    store.migrate()
    _fill(store, LocalObjectStore(tmp_path / "objects"))
    base = load_settings(None, env={})
    stop = threading.Event()
    _start_pruner(base, store, stop)  # retain_days 0 (the default): no pruner
    settings = dataclasses.replace(base, store=dataclasses.replace(
        base.store, retain_days=1.0, prune_interval_s=0.05))
    _start_pruner(settings, store, stop)
    cutoff = datetime.now(UTC) - timedelta(days=1)
    kept = sum(rec(e, s, minutes=m).analyzed_at >= cutoff for e, s, _, m in OLD + NEW)
    try:
        for _ in range(600):  # a bound on a hung test, not a timing
            if store.counts()["crashes"] == kept:
                break
            time.sleep(0.05)
    finally:
        stop.set()
    assert store.counts()["crashes"] == kept
    assert sum(c.count for c in store.clusters()) == 5
    store.dispose()


def test_cluster_pages_follow_the_crashes_kept_not_the_count(
        store: CrashStore, tmp_path: Path) -> None:
    """After a prune the cluster keeps its count (3 use-after-unload crashes) but only one of
    them is left: the crash list offers no page beyond the kept crashes."""
    from store.views import cluster_detail

    _fill(store, LocalObjectStore(tmp_path / "objects"))
    prune(store.engine, older_than=timedelta(days=30), now=NOW)
    with store.engine.connect() as conn:
        (cid,) = conn.execute(sa.select(crashes.c.cluster_id)
                              .where(crashes.c.event_id == "n1")).one()
    first = cluster_detail(store.engine, cid, crash_limit=1, now=NOW)
    assert first is not None and first.summary.count >= 2
    assert [c.event_id for c in first.crashes] == ["n1"] and not first.more_crashes
    second = cluster_detail(store.engine, cid, crash_limit=1, crash_offset=1, now=NOW)
    assert second is not None and second.crashes == () and not second.more_crashes
