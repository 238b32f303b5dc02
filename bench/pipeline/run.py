"""bench/pipeline: analyzer throughput, end-to-end latency, and the event path through Kafka.

    python -m bench.pipeline.run [--events 5000] [--write-docs]

1. Analyzer throughput: the committed real dumps analyzed, signed, clustered and stored by
   one worker (one process, one core) from the local object store; dumps per minute per core.
2. End-to-end latency: ``crashfleet run`` (embedded) with /metrics; a dump is renamed into
   the spool and /metrics is polled until ``crashfleet_crashes_total`` counts it.
3. Event path: N log-only ``crash-reported`` events produced to a real Tansu broker
   (``acks=all``) and consumed by a consumer group; events per second each way, counted by
   what the consumer received (never from end offsets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.docs import write_section
from crashfleet.stack import Stack, free_port

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "dumps"


def _dumps() -> list[Path]:
    out = []
    for mf in sorted(FIXTURES.glob("*/manifest.json")):
        m = json.loads(mf.read_text())
        p = mf.parent / m["dump"]
        if p.is_file():
            out.append(p)
    return out


def analyzer_throughput(tmp: Path) -> tuple[int, float]:
    from datetime import UTC, datetime

    from analyzer.worker import EventProcessor
    from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
    from ingest.localstore import LocalObjectStore
    from store import CrashStore

    objects = LocalObjectStore(tmp / "objects")
    store = CrashStore(f"sqlite:///{tmp / 'store.sqlite'}")
    store.migrate()
    proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                          block_cache_bytes=16 << 20)
    events = []
    import hashlib

    for p in _dumps():
        data = p.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        objects.put(f"dumps/{sha}", data)
        events.append(CrashReported(
            event_id=crash_event_id(sha), schema_version=1,
            host=HostIdentity("bench", "b" * 32, "x"),
            dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                         key=f"dumps/{sha}"),
            layout="spool", source_path=str(p), agent_version="bench",
            reported_at=datetime.now(UTC).isoformat()).to_bytes())
    t0 = time.process_time()
    for raw in events:
        proc.process(raw)
    cpu = time.process_time() - t0
    store.dispose()
    return len(events), cpu


def e2e_latency(tmp: Path) -> float:
    spool, data = tmp / "spool", tmp / "data"
    spool.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "--log-level", "warning",
                             "run", "--spool", str(spool), "--data", str(data),
                             "--metrics-port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        dump = _dumps()[0]
        shutil.copy(dump, tmp / "staged.dump")
        t0 = time.monotonic()
        os.rename(tmp / "staged.dump", spool / "crash.dump")
        while time.monotonic() < deadline + 60:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
            if any(ln.startswith("crashfleet_crashes_total{") and not ln.endswith(" 0.0")
                   for ln in text.splitlines()):
                return time.monotonic() - t0
            time.sleep(0.02)
        raise SystemExit("the crash never reached /metrics")
    finally:
        proc.terminate()
        proc.wait(30)


def event_path(tmp: Path, n: int) -> tuple[float, float]:
    from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
    from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer

    stack = Stack(tmp / "stack", services=("kafka",))
    info = stack.up()
    try:
        bs = info.kafka_bootstrap
        admin = KafkaAdmin(bs)
        admin.ensure_topics({"bench": 6})
        admin.close()
        payloads = []
        for i in range(n):
            sha = f"{i:064x}"
            payloads.append(CrashReported(
                event_id=crash_event_id(sha), schema_version=1,
                host=HostIdentity(f"host-{i % 1000}", f"{i % 1000:032x}", "boot"),
                dump=DumpRef(sha256=sha, size=1 << 30, format="flattened", content="log-only",
                             key=None, dmesg_key=f"dumps/{sha}.dmesg"),
                layout="debian-kdump-tools", source_path="/var/crash/x/dump.x",
                agent_version="bench", reported_at="2026-11-25T12:00:00Z",
                kernel_release="6.1.0-56-cloud-amd64").to_bytes())
        producer = KafkaProducer(bs, linger_ms=20)
        t0 = time.monotonic()
        for i, p in enumerate(payloads):
            producer.send("bench", p, key=f"{i % 1000:032x}".encode())
        producer.flush(120)
        produce_s = time.monotonic() - t0
        producer.close()
        consumer = KafkaConsumer(bs, "bench-group", ["bench"], session_timeout_s=6.0)
        got = 0
        first = None
        deadline = time.monotonic() + 300
        while got < n and time.monotonic() < deadline:
            batch = consumer.poll(1.0, max_records=1000)
            if batch and first is None:
                first = time.monotonic()
            got += len(batch)
        consume_s = time.monotonic() - (first or time.monotonic())
        consumer.close()
        if got != n:
            raise SystemExit(f"consumed {got} of {n} events")
        return n / produce_s, n / consume_s
    finally:
        stack.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-bench-pipe-") as t:
        tmp = Path(t)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        (tmp / "c").mkdir()
        n_dumps, cpu = analyzer_throughput(tmp / "a")
        latency = e2e_latency(tmp / "b")
        produce_rate, consume_rate = event_path(tmp / "c", args.events)
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        "loopback services; one run.", "",
        "| measure | result |", "| --- | --- |",
        f"| analyzer throughput without symbols ({n_dumps} real dumps, local object store, "
        "SQLite; deep analysis adds about 50 ms per dump, see Analyze) | "
        f"{n_dumps / cpu * 60:.0f} dumps per minute per core ({cpu / n_dumps * 1000:.0f} ms "
        "CPU each) |",
        f"| end-to-end latency, rename into the spool -> counted in /metrics | "
        f"{latency:.2f} s |",
        f"| event path: produce {args.events} log-only events (acks=all) | "
        f"{produce_rate:.0f} events/s |",
        f"| event path: consume them in a consumer group | {consume_rate:.0f} events/s |",
        "", "Target for the event path: at least 1,000 events/s.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section("Pipeline", f"`python -m bench.pipeline.run --write-docs`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
