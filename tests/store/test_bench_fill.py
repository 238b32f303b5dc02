"""bench/web fills its stores with bulk inserts, because a million crashes through the
one-transaction-per-crash write path would take hours. The shortcut is faithful only if it
writes exactly what :meth:`CrashStore.record` writes: the same crashes recorded both ways
give the same rows in every table the pages and the scrape read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.web.run import NOW, fill, synthetic_crashes, synthetic_fleet
from signature import Signature
from store import CrashRecord, CrashStore
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
    kernel_counts,
    signatures,
    taint_sets,
)
from store.views import ClusterQuery, list_clusters

N = 300
TABLES = (clusters, signatures, crashes, taint_sets, kernel_counts, cluster_days,
          cluster_kernels, cluster_hosts, cluster_taints, cluster_modules, cluster_arches,
          cluster_windows)


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bulk.sqlite'}", f"sqlite:///{tmp_path / 'record.sqlite'}"
        return
    import psycopg

    first: str = request.getfixturevalue("postgres_db")
    server: str = request.getfixturevalue("postgres_server")
    second = first + "_record"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{second.rsplit("/", 1)[1]}"')
    try:
        yield tuple(u.replace("postgresql://", "postgresql+psycopg://", 1)  # type: ignore[misc]
                    for u in (first, second))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{second.rsplit("/", 1)[1]}" WITH (FORCE)')


def _rows(store: CrashStore) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with store.engine.connect() as conn:
        for t in TABLES:
            rows = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
            out[t.name] = [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v
                                 for v in r) for r in rows]
    return out


def _record_all(store: CrashStore) -> None:
    fleet, _ = synthetic_fleet()
    by_id = {c["id"]: c for c in fleet}
    for batch in synthetic_crashes(N):
        for r in batch:
            c = by_id[r["cluster_id"]]
            sig = Signature(text=c["text"], id=c["id"], panic_class=c["class"],
                            frames=tuple(c["frames"]), taint=c["taint"],
                            findings=tuple(c["findings"]))
            out = store.record(CrashRecord(
                event_id=r["event_id"], host=r["host"], machine_id=r["machine_id"],
                kernel_release=r["kernel_release"], build_id=r["build_id"],
                crash_time=r["crash_time"], analyzed_at=r["analyzed_at"],
                dump_key=r["dump_key"], report_key=r["report_key"], signature=sig,
                findings=tuple(json.loads(r["findings"])), partial=r["partial"],
                arch=r["arch"]))
            assert out.inserted and out.cluster_id == c["id"]


def test_bulk_fill_writes_what_record_writes(urls: tuple[str, str]) -> None:
    bulk, recorded = CrashStore(urls[0]), CrashStore(urls[1])
    for s in (bulk, recorded):
        s.migrate()
    fill(bulk, N)
    _record_all(recorded)
    a, b = _rows(bulk), _rows(recorded)
    assert len(a["crashes"]) == N and len(a["clusters"]) > 100
    assert {r[1] for r in a["cluster_arches"]} == {"x86_64", "arm64"}
    for t in TABLES:
        assert a[t.name] == b[t.name], t.name
    # The window counts the pages read: built by the first reader on both, then equal.
    for s in (bulk, recorded):
        list_clusters(s.engine, ClusterQuery(window="30d"), now=NOW)
    assert _rows(bulk)["cluster_windows"] == _rows(recorded)["cluster_windows"] != []
    for s in (bulk, recorded):
        s.dispose()
