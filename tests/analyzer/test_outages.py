"""Outages against the real services: S3 (SeaweedFS) and the store (PostgreSQL) go away
behind a TCP forwarder (connections refused and cut, as when the server stops) and come
back. The event waits: nothing is dead-lettered, it is stored exactly once afterwards, and
the dependency gauge says what was down."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import CollectorRegistry

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from crashfleet.stack import StackInfo
from ingest import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer, TopicPartition
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from ingest.s3 import S3ObjectStore
from store import CrashStore

from ..outage import Outage

pytestmark = pytest.mark.services


def _until(cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Wait for ``cond`` (a bound on a hung test, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _publish_dump(objects: S3ObjectStore, dump: Path, log: EmbeddedLog) -> str:
    data = dump.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    objects.put(f"dumps/{sha}", data)
    event = CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                     key=f"dumps/{sha}"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z")
    producer = EmbeddedProducer(log)
    producer.send("reported", event.to_bytes(), key=b"k")
    producer.flush()
    return event.event_id


class _Running:
    """An analyzer loop in a thread over the embedded log."""

    def __init__(self, tmp: Path, objects: S3ObjectStore, store: CrashStore):
        self.log = EmbeddedLog(tmp / "events.sqlite")
        proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                              block_cache_bytes=1 << 22)
        self.loop = AnalyzerLoop(
            LoopConfig("analyzed", "dead", retry_backoff_s=0.05, retry_backoff_max_s=0.5,
                       in_flight=1, commit_interval_s=0.0, poll_timeout_s=0.2),
            consumer=EmbeddedConsumer(self.log, "g", ["reported"], session_timeout_s=5.0),
            producer=EmbeddedProducer(self.log), processor=proc, store=store,
            metrics=AnalyzerMetrics(CollectorRegistry()))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop.run, args=(self.stop,), daemon=True)

    def value(self, outcome: str) -> float:
        return float(self.loop.metrics.events.labels(outcome=outcome)._value.get())

    def up(self, dependency: str) -> float:
        return float(self.loop.health.gauge.labels(dependency=dependency)._value.get())

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.loop.consumer.close()

    def dead_letters(self) -> int:
        c = EmbeddedConsumer(self.log, "inspect", ["dead"], session_timeout_s=2.0)
        n = len(c.poll(0.5, max_records=100))
        c.close()
        return n

    def committed(self) -> int:
        return sum(self.loop.consumer.committed(TopicPartition("reported", p)) or 0  # type: ignore[attr-defined]
                   for p in range(4))


@pytest.fixture
def dump(fixture_dumps: list[tuple[dict[str, object], Path]]) -> Path:
    return min((p for _, p in fixture_dumps), key=lambda p: p.stat().st_size)


@pytest.fixture
def s3_proxy(services: StackInfo) -> Iterator[Outage]:
    u = urlsplit(services.s3_endpoint)
    proxy = Outage(u.hostname or "127.0.0.1", u.port or 80)
    yield proxy
    proxy.close()


def test_s3_outage_waits_then_stores_once(tmp_path: Path, services: StackInfo, s3_bucket: str,
                                          s3_proxy: Outage, dump: Path) -> None:
    direct = S3ObjectStore(s3_bucket, endpoint_url=services.s3_endpoint, addressing_style="path")
    flaky = S3ObjectStore(s3_bucket, endpoint_url=f"http://127.0.0.1:{s3_proxy.port}",
                          addressing_style="path", connect_timeout_s=0.5, read_timeout_s=2.0,
                          max_attempts=1)
    store = CrashStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    run = _Running(tmp_path, flaky, store)
    event_id = _publish_dump(direct, dump, run.log)
    with s3_proxy.outage():
        run.thread.start()
        _until(lambda: run.value("retried") >= 3, "retries during the S3 outage")
        assert run.up("object_store") == 0
        assert run.dead_letters() == 0 and store.counts()["crashes"] == 0
    _until(lambda: store.counts()["crashes"] == 1 and run.committed() == 1, "the stored crash")
    run.finish()
    assert run.up("object_store") == 1
    assert run.dead_letters() == 0 and store.stats().failures == 0
    assert run.value("stored") == 1 and run.value("dead_lettered") == 0
    assert [r.event_id for r in store.crashes(store.clusters()[0].id)] == [event_id]


def test_store_outage_waits_then_stores_once_and_the_report_is_rewritten(
        tmp_path: Path, services: StackInfo, s3_bucket: str, postgres_db: str,
        dump: Path) -> None:
    """PostgreSQL unreachable after the report object was written (the orphan-report case):
    the event waits, the report is rewritten in place, the row is stored once."""
    u = urlsplit(postgres_db)
    proxy = Outage(u.hostname or "127.0.0.1", u.port or 5432)
    try:
        netloc = u.netloc.rsplit("@", 1)
        via = (netloc[0] + "@" if len(netloc) == 2 else "") + f"127.0.0.1:{proxy.port}"
        url = urlunsplit((u.scheme, via, u.path, u.query, u.fragment))
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        store = CrashStore(url)
        store.migrate()
        objects = S3ObjectStore(s3_bucket, endpoint_url=services.s3_endpoint,
                                addressing_style="path")
        run = _Running(tmp_path, objects, store)
        event_id = _publish_dump(objects, dump, run.log)
        with proxy.outage():
            run.thread.start()
            _until(lambda: run.value("retried") >= 3, "retries during the store outage")
            assert run.up("store") == 0
            assert run.dead_letters() == 0
            # The report object was written before the row: an orphan until the store answers.
            reports = [o.key for o in objects.list_objects("dumps/") if
                       o.key.endswith(".report.json")]
            assert len(reports) == 1
        _until(lambda: run.committed() == 1, "the commit after the store came back")
        run.finish()
        assert run.up("store") == 1
        assert store.counts()["crashes"] == 1 and store.stats().failures == 0
        assert run.value("stored") == 1 and run.dead_letters() == 0
        assert [o.key for o in objects.list_objects("dumps/")
                if o.key.endswith(".report.json")] == reports
        row = store.crashes(store.clusters()[0].id)[0]
        assert row.event_id == event_id and row.report_key == reports[0]
        store.dispose()
    finally:
        proxy.close()
