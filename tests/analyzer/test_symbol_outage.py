"""A symbol source that does not answer is an outage: the event waits (no log-only report with
another signature is stored meanwhile) and is analyzed once the source answers — here a real
HTTP server behind a TCP forwarder, which has no debug info for the kernel (404), so the
report is then log-based, as it would be with the source up all along."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from crashfleet.wiring.symbols import open_cache, pack_provider
from foundation.settings import load_settings
from ingest import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer, LocalObjectStore
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from store import CrashStore

from ..outage import Outage


class _NoDebugInfo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def debuginfod() -> Iterator[Outage]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoDebugInfo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = Outage("127.0.0.1", server.server_address[1])
    yield proxy
    proxy.close()
    server.shutdown()


def test_symbol_source_outage_waits_instead_of_a_log_only_report(
        tmp_path: Path, debuginfod: Outage,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    base = load_settings(None, env={})
    settings = dataclasses.replace(base, symbols=dataclasses.replace(
        base.symbols, cache_dir=str(tmp_path / "symbols"), sources=("debuginfod",),
        debuginfod_urls=(f"http://127.0.0.1:{debuginfod.port}",), debuginfod_timeout_s=1.0))
    objects = LocalObjectStore(tmp_path / "objects")
    store = CrashStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    log = EmbeddedLog(tmp_path / "events.sqlite")
    proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                          block_cache_bytes=1 << 22,
                          symbols=pack_provider(open_cache(settings, CollectorRegistry())))
    loop = AnalyzerLoop(
        LoopConfig("analyzed", "dead", retry_backoff_s=0.05, retry_backoff_max_s=0.2,
                   in_flight=1, commit_interval_s=0.0, poll_timeout_s=0.2),
        consumer=EmbeddedConsumer(log, "g", ["reported"], session_timeout_s=5.0),
        producer=EmbeddedProducer(log), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))
    dump = min((p for _, p in fixture_dumps), key=lambda p: p.stat().st_size)
    data = dump.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    objects.put(f"dumps/{sha}", data)
    producer = EmbeddedProducer(log)
    producer.send("reported", CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                     key=f"dumps/{sha}"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z").to_bytes())
    producer.flush()

    retried = loop.metrics.events.labels(outcome="retried")
    stop = threading.Event()
    debuginfod.down()
    worker = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60  # a bound on a hung test, not a speed assertion
    while retried._value.get() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert retried._value.get() >= 3
    assert loop.health.gauge.labels(dependency="symbols")._value.get() == 0
    assert store.counts()["crashes"] == 0  # no silent downgrade while the source is down
    debuginfod.up()
    while store.counts()["crashes"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=30)
    assert store.counts()["crashes"] == 1 and store.stats().failures == 0
    assert loop.health.gauge.labels(dependency="symbols")._value.get() == 1
    (report,) = [o.key for o in objects.list_objects("dumps/") if o.key.endswith(".json")]
    assert b"symbols: no pack (NotFound" in objects.get_range(report, 0, 1 << 24)
