"""bench/pipeline/consumer: one analyzer process against the real stack, today's loop beside
the one-at-a-time loop it replaced, measured in one run.

    python -m bench.pipeline.consumer [--dumps 60] [--in-flight 4] [--write-docs]

Tansu and SeaweedFS are started on loopback (crashfleet.stack); the store is SQLite. The
committed real dumps are made distinct crashes by appending a counter (8 bytes after the
end, which the decoder ignores), uploaded once with the offset index the agent would upload
beside them, and announced on a fresh topic per mode.
Each mode is an ``AnalyzerLoop`` in this process with its own topic, group and store:

- ``one at a time``: ``in_flight=1``, offsets committed after every event (the loop before
  issue 17);
- ``in flight``: ``in_flight=N`` (S3 reads overlap in threads), commits throttled to 1/s.

Throughput is events stored per minute from the first event taken to the last store (the
group join before it and the idle tail that ends the run are not counted; the join is shown).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.docs import write_section
from crashfleet.stack import Stack

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "dumps"


def _variants(n: int) -> list[bytes]:
    base = []
    for mf in sorted(FIXTURES.glob("*/manifest.json")):
        m = json.loads(mf.read_text())
        p = mf.parent / m["dump"]
        if p.is_file() and m["format"] == "kdump-flattened":  # the x86_64 ones, as spooled
            base.append(p.read_bytes())
    return [base[i % len(base)] + i.to_bytes(8, "big") for i in range(n)]


class _Counting:
    """The object store with its requests counted (the S3 client's signing and parsing is a
    large share of an event's CPU)."""

    def __init__(self, inner: object):
        self._inner = inner
        self.requests = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._inner, name)
        if callable(attr) and name in ("get_range", "put", "head", "get"):
            def counted(*a: object, **kw: object) -> object:
                self.requests += 1
                return attr(*a, **kw)
            return counted
        return attr


class _FirstCall:
    """The processor with the time of its first event noted: throughput is timed from the
    first event taken, not from the start of the loop (a consumer-group join on Tansu takes
    seconds, which a 60-event run would otherwise count as work)."""

    def __init__(self, inner: object):
        self._inner = inner
        self.first: float | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def process(self, *a: object, **kw: object) -> object:
        if self.first is None:
            self.first = time.time()
        return self._inner.process(*a, **kw)  # type: ignore[attr-defined]


def _mode(tmp: Path, bootstrap: str, s3_endpoint: str, bucket: str, shas: list[tuple[str, int]],
          name: str, in_flight: int, commit_interval_s: float) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from analyzer.metrics import AnalyzerMetrics
    from analyzer.service import AnalyzerLoop, LoopConfig
    from analyzer.worker import EventProcessor
    from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
    from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer
    from ingest.s3 import S3ObjectStore
    from store import CrashStore

    topic = f"bench-{name}-{os.getpid()}"
    admin = KafkaAdmin(bootstrap)
    admin.ensure_topics({topic: 4, topic + "-out": 4, topic + "-dead": 1})
    admin.close()
    producer = KafkaProducer(bootstrap, linger_ms=20)
    for i, (sha, size) in enumerate(shas):
        producer.send(topic, CrashReported(
            event_id=crash_event_id(sha), schema_version=1,
            host=HostIdentity(f"host-{i}", f"{i:032x}", "boot"),
            dump=DumpRef(sha256=sha, size=size, format="flattened", content="full",
                         key=f"dumps/{sha}", index_key=f"dumps/{sha}.flatindex"),
            layout="spool", source_path="/spool/x", agent_version="bench",
            reported_at="2026-11-25T12:00:00Z").to_bytes(), key=f"{i:032x}".encode())
    producer.flush(60)
    producer.close()
    store = CrashStore(f"sqlite:///{tmp / (name + '.sqlite')}")
    store.migrate()
    objects = _Counting(S3ObjectStore(bucket, endpoint_url=s3_endpoint, addressing_style="path"))
    metrics = AnalyzerMetrics(CollectorRegistry())
    processor = _FirstCall(EventProcessor(
        objects=objects, store=store,  # type: ignore[arg-type]
        report_suffix=".report.json", block_cache_bytes=16 << 20))
    loop = AnalyzerLoop(
        LoopConfig(topic + "-out", topic + "-dead", retry_backoff_s=2.0,
                   retry_backoff_max_s=30.0, in_flight=in_flight,
                   commit_interval_s=commit_interval_s),
        consumer=KafkaConsumer(bootstrap, f"{topic}-g", [topic], session_timeout_s=6.0),
        producer=KafkaProducer(bootstrap), processor=processor,  # type: ignore[arg-type]
        store=store, metrics=metrics)
    t0, c0 = time.time(), time.process_time()
    handled = loop.run(threading.Event(), idle_exit_s=5.0)
    cpu = time.process_time() - c0  # includes the idle tail: a few ms of polling
    last = metrics.last_success._value.get()
    stored = store.counts()["crashes"]
    loop.consumer.close()  # type: ignore[attr-defined]
    loop.producer.close()
    store.dispose()
    if handled != len(shas) or stored != len(shas):
        raise SystemExit(f"{name}: handled {handled}, stored {stored} of {len(shas)}")
    n = len(shas)
    first = processor.first or t0
    return {"per_min": n / (last - first) * 60, "cpu_ms": cpu / n * 1000,
            "requests": objects.requests / n, "join_s": first - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dumps", type=int, default=60)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "crashfleet-bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "crashfleet-bench")
    from ingest.s3 import S3ObjectStore

    with tempfile.TemporaryDirectory(prefix="cf-bench-consumer-") as t:
        tmp = Path(t)
        stack = Stack(tmp / "stack", services=("kafka", "s3"))
        info = stack.up()
        try:
            objects = S3ObjectStore("bench", endpoint_url=info.s3_endpoint,
                                    addressing_style="path")
            objects.ensure_bucket()
            from vmcore.formats.flattened import build_index
            from vmcore.source import BytesSource

            shas = []
            for data in _variants(args.dumps):
                sha = hashlib.sha256(data).hexdigest()
                objects.put(f"dumps/{sha}", data)
                # The offset index the agent uploads beside a flattened dump.
                objects.put(f"dumps/{sha}.flatindex",
                            build_index(BytesSource(data)).to_bytes())
                shas.append((sha, len(data)))
            old = _mode(tmp, info.kafka_bootstrap, info.s3_endpoint, "bench", shas,
                        "one-at-a-time", 1, 0.0)
            new = _mode(tmp, info.kafka_bootstrap, info.s3_endpoint, "bench", shas,
                        "in-flight", args.in_flight, 1.0)
        finally:
            stack.down()
    floor = 60_000 / new["cpu_ms"]
    lines = [
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"loopback Tansu + SeaweedFS, SQLite store, no symbols (6.x dumps analyzed from their "
        f"own kallsyms, BTF and ORC); {args.dumps} distinct real dumps per mode, one process; "
        f"one run; load average {os.getloadavg()[0]:.1f} at the end (other jobs share the "
        "machine).", "",
        "| analyzer loop | dumps per minute per process | CPU per dump | object-store "
        "requests per dump |", "| --- | --- | --- | --- |",
        f"| one at a time, commit after every event (before) | {old['per_min']:.0f} | "
        f"{old['cpu_ms']:.0f} ms | {old['requests']:.1f} |",
        f"| {args.in_flight} in flight, commits throttled to 1/s | {new['per_min']:.0f} | "
        f"{new['cpu_ms']:.0f} ms | {new['requests']:.1f} |",
        "", f"Consumer-group join before the first event (not counted): "
        f"{old['join_s']:.1f} s and {new['join_s']:.1f} s.",
        "", f"Speed-up: {new['per_min'] / old['per_min']:.2f}x (target in issue 17: 3x). "
        f"CPU floor of one process (one core, no waiting): 60 s / {new['cpu_ms']:.0f} ms = "
        f"{floor:.0f} dumps per minute; the in-flight loop reaches "
        f"{100 * new['per_min'] / floor:.0f}% of it.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_section("Analyzer consumer",
                      f"`python -m bench.pipeline.consumer --write-docs`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
