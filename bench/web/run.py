"""bench/web: the web UI's pages and one /metrics scrape at 1k, 100k and 1M stored crashes.

    nice -n 5 python -m bench.web.run [--sizes 1000,100000,1000000]
        [--backends sqlite,postgresql] [--rounds 9] [--write-docs]

A synthetic fleet: crashes Zipf-distributed (s = 1.1) over 2,000 clusters, from 10,000
hosts (every fourth an arm64 server on one of 4 arm64 builds) on 20 kernels over 120 days.
The store is filled with bulk inserts of exactly the rows ``CrashStore.record`` writes
(crashes, signatures, clusters, taint sets and the per-cluster aggregates;
:func:`store.aggregates.modules_of` decides the module rows), because a million crashes
through the one-transaction-per-crash write path would take hours here
(tests/store/test_bench_fill.py checks the two write the same rows). Then the 30-day window
counts are rebuilt once (timed: the day's first reader does it), and, with the ASGI app
in-process (routing, queries and template rendering; no network), the median of
``--rounds`` requests each: the clusters page (default 30-day window and all time), the
largest cluster's page, a crash page (no object store: report and log absent), and one
Prometheus scrape of the store collector.

PostgreSQL: ``CRASHFLEET_TEST_POSTGRES_DSN``, else the server on 127.0.0.1:5432, else a
throwaway one (the local stack's code); one scratch database per run, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.docs import write_section
from bench.fmt import ms
from store import CrashStore
from store.aggregates import modules_of
from store.schema import (
    cluster_arches,
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

CLUSTERS, HOSTS, KERNELS, DAYS = 2000, 10_000, 20, 120
ARM_KERNELS = 4  # of the 20
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BATCH = 20_000


def _fleet(rng: random.Random) -> list[dict[str, Any]]:
    """2,000 cluster definitions: class, taint, findings, frames (with modules)."""
    classes = ["page_fault", "general_protection", "bug", "warning", "soft_lockup", "sysrq"]
    out = []
    for i in range(CLUSTERS):
        mod = f"mod{i % 150}"
        frames = [f"fn_{i}_a [{mod}]", f"fn_{i % 97}_b", f"fn_{i % 31}_c", "do_syscall_64"]
        findings = [f"use-after-module-unload({mod})"] if i % 17 == 0 else (
            ["null-pointer-dereference"] if i % 5 == 0 else [])
        taint = rng.choice(["", "O", "OE", "W", "DW", "OEW"])
        klass = classes[i % len(classes)]
        text = f"{klass}: " + (", ".join(findings) + " | " if findings else "") + \
            " | ".join(frames) + (f" [{taint}]" if taint else "")
        out.append({"id": f"{i:016x}", "text": text[:255], "class": klass, "taint": taint,
                    "findings": findings, "frames": frames})
    return out


def _crash_rows(n: int, fleet: list[dict[str, Any]],
                rng: random.Random) -> Iterator[list[dict[str, Any]]]:
    weights = [1 / (r + 1) ** 1.1 for r in range(CLUSTERS)]
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    # Every fourth host is an arm64 server running one of the arm64 builds.
    amd = [f"6.{k // 4}.0-{10 + k}-cloud-amd64" for k in range(KERNELS - ARM_KERNELS)]
    arm = [f"6.{k // 2}.0-{10 + k}-cloud-arm64" for k in range(ARM_KERNELS)]
    batch: list[dict[str, Any]] = []
    for i in range(n):
        c = fleet[rng.choices(range(CLUSTERS), cum_weights=cum)[0]]
        at = NOW - timedelta(seconds=rng.random() * DAYS * 86400)
        h = rng.randrange(HOSTS)
        host = f"host-{h:05d}"
        arch, kernels = ("arm64", arm) if h % 4 == 3 else ("x86_64", amd)
        finds = [{"kind": f.split("(")[0], "module": f.split("(")[1][:-1] if "(" in f
                  else None} for f in c["findings"]]
        batch.append({
            "event_id": f"crash-{i:012d}", "host": host, "machine_id": f"m-{host}",
            "kernel_release": kernels[rng.randrange(len(kernels))], "build_id": None,
            "arch": arch,
            "crash_time": at, "analyzed_at": at, "dump_key": f"dumps/{i:012d}",
            "report_key": f"dumps/{i:012d}.report.json", "signature_id": c["id"],
            "cluster_id": c["id"], "panic_class": c["class"], "taint": c["taint"],
            "findings": json.dumps(finds), "partial": False})
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def synthetic_fleet(seed: int = 1) -> tuple[list[dict[str, Any]], random.Random]:
    """The 2,000 cluster definitions and the generator the crashes are drawn from next."""
    rng = random.Random(seed)
    return _fleet(rng), rng


def synthetic_crashes(n: int, seed: int = 1) -> Iterator[list[dict[str, Any]]]:
    """The ``n`` crashes of the bench, in batches of crashes table rows."""
    fleet, rng = synthetic_fleet(seed)
    return _crash_rows(n, fleet, rng)


def _aggregate(n: int, seed: int, fleet: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``CrashStore.record`` would have counted for the bench's crashes, in memory."""
    by_id = {c["id"]: c for c in fleet}
    for c in fleet:  # what the write path derives per crash, the same for a cluster's crashes
        c["modules"] = modules_of(c["frames"], [
            {"module": f.split("(")[1][:-1]} for f in c["findings"] if "(" in f])
    agg: dict[str, dict[tuple[str, Any], list[Any]]] = {
        t: {} for t in ("days", "kernel", "host", "taint", "module", "arch")}
    stats: dict[str, list[Any]] = {}
    taints: dict[str, tuple[datetime, str]] = {}  # letters -> the first crash showing them
    for batch in synthetic_crashes(n, seed):
        for r in batch:
            cid, at = r["cluster_id"], r["crash_time"]
            s = stats.setdefault(cid, [0, at, at])
            s[0] += 1
            s[1], s[2] = min(s[1], at), max(s[2], at)
            key_day = (cid, at.date())
            agg["days"][key_day] = [agg["days"].get(key_day, [0])[0] + 1]
            taints.setdefault(r["taint"], (r["analyzed_at"], r["event_id"]))
            for name, values in (("kernel", [r["kernel_release"]]), ("host", [r["host"]]),
                                 ("taint", [r["taint"]]), ("module", by_id[cid]["modules"]),
                                 ("arch", [r["arch"]])):
                for v in values:
                    cur = agg[name].setdefault((cid, v), [0, at, at])
                    cur[0] += 1
                    cur[1], cur[2] = min(cur[1], at), max(cur[2], at)
    return {"agg": agg, "stats": stats, "taints": taints}


def fill(store: CrashStore, n: int, seed: int = 1) -> str:
    """Bulk-insert ``n`` crashes and their aggregates; returns the largest cluster's id."""
    fleet, _ = synthetic_fleet(seed)
    counted = _aggregate(n, seed, fleet)
    agg, stats = counted["agg"], counted["stats"]
    used = [c for c in fleet if c["id"] in stats]
    n_hosts: dict[str, int] = {}
    for cid, _h in agg["host"]:
        n_hosts[cid] = n_hosts.get(cid, 0) + 1
    with store.engine.begin() as conn:
        conn.execute(clusters.insert(), [{
            "id": c["id"], "signature_text": c["text"], "panic_class": c["class"],
            "taint": c["taint"], "findings": json.dumps(c["findings"]),
            "frames": json.dumps(c["frames"]), "first_seen": stats[c["id"]][1],
            "last_seen": stats[c["id"]][2], "count": stats[c["id"]][0], "alt_titles": "[]",
            "hosts": n_hosts.get(c["id"], 0)} for c in used])
        conn.execute(signatures.insert(), [{
            "id": c["id"], "text": c["text"], "cluster_id": c["id"],
            "first_seen": stats[c["id"]][1], "last_seen": stats[c["id"]][2],
            "count": stats[c["id"]][0]} for c in used])
        conn.execute(taint_sets.insert(), [{"letters": t, "first_seen": at,
                                            "first_event_id": e}
                                           for t, (at, e) in counted["taints"].items()])
    for batch in synthetic_crashes(n, seed):  # now that their clusters exist (foreign keys)
        with store.engine.begin() as conn:
            conn.execute(crashes.insert(), batch)
    kernels: dict[str, int] = {}
    for (_c, k), x in agg["kernel"].items():
        kernels[k] = kernels.get(k, 0) + x[0]
    with store.engine.begin() as conn:
        conn.execute(kernel_counts.insert(), [{"kernel": k, "count": n}
                                              for k, n in kernels.items()])
        conn.execute(cluster_days.insert(), [{"cluster_id": c, "day": d, "count": v[0]}
                                             for (c, d), v in agg["days"].items()])
        for name, table in (("kernel", cluster_kernels), ("host", cluster_hosts),
                            ("taint", cluster_taints), ("module", cluster_modules),
                            ("arch", cluster_arches)):
            rows = [{"cluster_id": c, name: v, "count": x[0], "first_seen": x[1],
                     "last_seen": x[2]} for (c, v), x in agg[name].items()]
            for i in range(0, len(rows), BATCH):
                conn.execute(table.insert(), rows[i:i + BATCH])
    _analyze(store)
    return max(stats, key=lambda c: stats[c][0])


def _analyze(store: CrashStore) -> None:
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))


def _median(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm: first-use imports, template compilation, the database's cache
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(store: CrashStore, top: str, rounds: int) -> dict[str, float]:
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry, generate_latest

    from analyzer.metrics import StoreCollector
    from store.windows import ensure_windows
    from web import create_app

    client = TestClient(create_app(store, clock=lambda: NOW))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, 20))
    t0 = time.perf_counter()
    ensure_windows(store.engine, 30, NOW.date())  # the day's first 30-day reader rebuilds
    rebuild = time.perf_counter() - t0

    def get(url: str) -> Callable[[], None]:
        def go() -> None:
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
        return go

    return {
        "clusters": _median(get("/"), rounds),
        "clusters_all": _median(get("/?window=all"), rounds),
        "cluster": _median(get(f"/clusters/{top}"), rounds),
        "crash": _median(get("/crashes/crash-000000000007"), rounds),
        "scrape": _median(lambda: generate_latest(registry), rounds),
        "rebuild": rebuild,
    }


def _pg_url(root: Path) -> tuple[str, Callable[[], None]]:
    import psycopg

    from crashfleet.stack import Stack

    stack = Stack(root, services=("postgres",),
                  postgres_dsn=os.environ.get("CRASHFLEET_TEST_POSTGRES_DSN"))
    server = stack.up(timeout=120).postgres_dsn
    name = "bench_web_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        stack.down()

    url = server.rsplit("/", 1)[0] + "/" + name
    return url.replace("postgresql://", "postgresql+psycopg://", 1), drop


def run_one(backend: str, n: int, rounds: int, root: Path) -> dict[str, Any]:
    if backend == "sqlite":
        url, cleanup = f"sqlite:///{root / f'bench-{n}.sqlite'}", (lambda: None)
    else:
        url, cleanup = _pg_url(root / f"pg-{n}")
    store = CrashStore(url)
    try:
        store.migrate()
        t0 = time.perf_counter()
        top = fill(store, n)
        fill_s = time.perf_counter() - t0
        row = {"backend": backend, "crashes": n, "fill_s": fill_s,
               **measure(store, top, rounds)}
    finally:
        store.dispose()
        cleanup()
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| backend | crashes | clusters page (30d) | clusters page (all) | "
             "largest cluster | crash page | /metrics scrape | 30-day window rebuild | fill |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['crashes']:,} | {ms(r['clusters'])} | "
                     f"{ms(r['clusters_all'])} | {ms(r['cluster'])} | {ms(r['crash'])} | "
                     f"{ms(r['scrape'])} | {ms(r['rebuild'])} | {ms(r['fill_s'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        for backend in args.backends.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                rows.append(run_one(backend, n, args.rounds, Path(tmp)))
    print(table(rows))
    if args.write_docs:
        write_section("Web", BODY + "\n" + table(rows) + "\n")
    return 0


BODY = """\
`python -m bench.web.run --write-docs` (run under `nice`): a synthetic fleet of 2,000 clusters
(Zipf, s = 1.1), 10,000 hosts (a quarter of them arm64) and 20 kernels over 120 days,
bulk-inserted as the rows `CrashStore.record` writes, then the median of 9 in-process requests
through the ASGI app (routing, queries, Jinja2 rendering; no network): the clusters page with
its default 30-day window and with all time, the largest cluster's page (its facets, newest
100 crashes and similar clusters), a crash page (without an object store), and one Prometheus
scrape of the store collector (top 20 clusters by name). Pages and the scrape read the
clusters table and the per-cluster aggregates kept at write time, never the crashes table
beyond one page of rows. A windowed list reads one row per cluster from `cluster_windows`
(migration `0006_windows`), which the write path keeps and the day's first reader of a window
rebuilds from the daily counts: that once-a-day rebuild is its own column, and the page
columns are the requests after it.

The bulk fill is a shortcut for the write path (a million crashes through one transaction
each would take hours here); `tests/store/test_bench_fill.py` records the same 300 synthetic
crashes both through `CrashStore.record` and through the bulk fill, on SQLite and on
PostgreSQL, and finds every table the pages and the scrape read identical (clusters,
signatures, crashes, taint sets, kernel counts, the daily, kernel, host, taint, module and
arch aggregates, and the window counts once built).
"""


if __name__ == "__main__":
    raise SystemExit(main())
