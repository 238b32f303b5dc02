"""The analyzer's consumer loop on the embedded log: retries, dead letters, commits, stop."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor, Processed
from ingest import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer, LocalObjectStore, TopicPartition
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from store import CrashStore
from vmcore.analyze import Analysis
from vmcore.source import ObjectStoreSource


def _event(objects: LocalObjectStore, data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    objects.put(f"dumps/{sha}", data)
    return CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                     key=f"dumps/{sha}"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z").to_bytes()


def _loop(tmp: Path, objects: object, **cfg: float) -> tuple[AnalyzerLoop, EmbeddedLog,
                                                             CrashStore]:
    log = EmbeddedLog(tmp / "events.sqlite")
    store = CrashStore(f"sqlite:///{tmp / 'store.sqlite'}")
    store.migrate()
    proc = EventProcessor(objects=objects, store=store,  # type: ignore[arg-type]
                          report_suffix=".report.json", block_cache_bytes=1 << 20)
    loop = AnalyzerLoop(
        LoopConfig("analyzed", "dead", retry_backoff_s=cfg.get("backoff", 0.01),
                   retry_backoff_max_s=cfg.get("backoff_max", 0.05), in_flight=1,
                   commit_interval_s=0.0, poll_timeout_s=0.2),
        consumer=EmbeddedConsumer(log, "g", ["reported"], session_timeout_s=2.0),
        producer=EmbeddedProducer(log), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))
    return loop, log, store


def _dead_letters(log: EmbeddedLog) -> list[dict[str, bytes]]:
    c = EmbeddedConsumer(log, "inspect", ["dead"], session_timeout_s=2.0)
    out = [dict(r.headers) for r in c.poll(1.0, max_records=100)]
    c.close()
    return out


def test_undecodable_dump_is_dead_lettered_kept_and_committed(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    loop, log, store = _loop(tmp_path, objects)
    producer = EmbeddedProducer(log)
    producer.send("reported", _event(objects, os.urandom(5000)))
    producer.send("reported", b"{not json")
    producer.flush()
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 2
    dead = _dead_letters(log)
    assert len(dead) == 2
    assert b"unknown dump format" in dead[0]["error"] and dead[0]["attempts"] == b"1"
    assert b"malformed crash-reported event" in dead[1]["error"]
    assert store.stats().dead_lettered == 2
    assert len(list(objects.list_objects("dumps/"))) == 1  # the dump itself is kept
    total = sum(loop.consumer.committed(TopicPartition("reported", p)) or 0  # type: ignore[attr-defined]
                for p in range(4))
    assert total == 2


def test_unreachable_s3_is_retried_until_stopped_never_dead_lettered(tmp_path: Path) -> None:
    """S3 down is an outage, not a bad event: the worker keeps the event, backs off and keeps
    polling (partition paused) until stopped; nothing is dead-lettered or committed, and the
    object store is reported down once."""
    from ingest.s3 import S3ObjectStore

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # a port with nothing listening: S3 is down
    port = s.getsockname()[1]
    try:
        dead_s3 = S3ObjectStore("crashfleet", endpoint_url=f"http://127.0.0.1:{port}",
                                connect_timeout_s=0.2, max_attempts=1)
        loop, log, store = _loop(tmp_path, dead_s3)
        producer = EmbeddedProducer(log)
        producer.send("reported", _event(LocalObjectStore(tmp_path / "o"), b"x" * 100))
        producer.flush()
        stop = threading.Event()
        retried = loop.metrics.events.labels(outcome="retried")
        real_wait = loop._wait

        def wait_then_stop(delay_s: float, stop_: threading.Event) -> None:
            if retried._value.get() >= 5:
                stop.set()  # SIGTERM during the outage
            real_wait(delay_s, stop_)

        loop._wait = wait_then_stop  # type: ignore[method-assign]
        assert loop.run(stop) == 0
    finally:
        s.close()
    assert _dead_letters(log) == []
    assert store.stats().dead_lettered == 0 and store.stats().failures == 0
    assert retried._value.get() >= 5
    assert loop.health.gauge.labels(dependency="object_store")._value.get() == 0
    assert all(loop.consumer.committed(TopicPartition("reported", p)) is None  # type: ignore[attr-defined]
               for p in range(4))
    # The next start resumes at the event.
    loop.consumer.close()
    fresh = EmbeddedConsumer(log, "g", ["reported"], session_timeout_s=2.0)
    assert len(fresh.poll(1.0, max_records=10)) == 1


def test_stop_finishes_the_current_event_commits_and_leaves_the_rest(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "objects")
    loop, log, _store = _loop(tmp_path, objects)
    producer = EmbeddedProducer(log)
    for i in range(3):
        producer.send("reported", _event(objects, os.urandom(100) + bytes([i])), key=b"k")
    producer.flush()
    stop = threading.Event()
    real = loop.processor.process
    seen: list[bytes] = []

    def process_and_stop(raw: bytes, **kw: Any) -> Processed:
        seen.append(raw)
        stop.set()  # SIGTERM arrives while the first dump is being analyzed
        return real(raw, **kw)

    loop.processor.process = process_and_stop  # type: ignore[method-assign]
    assert loop.run(stop) == 1
    assert len(seen) == 1
    # The finished event is committed; the next worker starts at the second one.
    fresh = EmbeddedConsumer(log, "g", ["reported"], session_timeout_s=2.0)
    loop.consumer.close()
    remaining = fresh.poll(1.0, max_records=10)
    assert len(remaining) == 2 and seen[0] not in [r.value for r in remaining]


def test_decoder_bug_is_dead_lettered_not_a_crash_loop(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the decoder does not type (a bug met on one dump) dead-letters that event
    with its reason; the next event is analyzed. The bug is injected by patching the decoder:
    every known reproducer has been fixed, so no real dump triggers one (mock on purpose)."""
    import vmcore.analyze

    objects = LocalObjectStore(tmp_path / "objects")
    loop, log, store = _loop(tmp_path, objects)
    real = vmcore.analyze.analyze
    poison = os.urandom(4096)

    def buggy(src: ObjectStoreSource, **kw: Any) -> Analysis:
        if src.read(0, 64) == poison[:64]:
            raise struct.error("unpack_from requires a buffer of at least 4 bytes")
        return real(src, **kw)

    monkeypatch.setattr(vmcore.analyze, "analyze", buggy)
    producer = EmbeddedProducer(log)
    producer.send("reported", _event(objects, poison), key=b"k")
    producer.send("reported", _event(objects, os.urandom(5000)), key=b"k")
    producer.flush()
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 2
    dead = _dead_letters(log)
    assert len(dead) == 2
    assert dead[0]["error"].startswith(b"decoder bug: error: unpack_from requires")
    assert b"unknown dump format" in dead[1]["error"]  # the next event was analyzed
    assert store.stats().dead_lettered == 2
    sha = hashlib.sha256(poison).hexdigest()
    assert objects.head(f"dumps/{sha}") is not None  # the dump is kept for a replay


def test_events_in_flight_are_taken_in_order_and_committed_once_when_idle(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """Four events at once: results are taken in poll order (the dead letters keep their
    order), and with a long commit interval the finished offsets are committed only when the
    worker has nothing in flight, not after every event."""
    objects = LocalObjectStore(tmp_path / "objects")
    log = EmbeddedLog(tmp_path / "events.sqlite")
    store = CrashStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                          block_cache_bytes=1 << 22)
    loop = AnalyzerLoop(
        LoopConfig("analyzed", "dead", retry_backoff_s=2.0, retry_backoff_max_s=30.0,
                   poll_timeout_s=0.2, in_flight=4, commit_interval_s=3600.0),
        consumer=EmbeddedConsumer(log, "g", ["reported"], session_timeout_s=5.0),
        producer=EmbeddedProducer(log), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))
    producer = EmbeddedProducer(log)
    junk = []
    for i, (_, dump) in enumerate(fixture_dumps[:3]):
        producer.send("reported", _event(objects, dump.read_bytes()), key=b"k")
        junk.append(os.urandom(3000) + bytes([i]))
        producer.send("reported", _event(objects, junk[-1]), key=b"k")
    producer.flush()
    commits: list[dict[TopicPartition, int]] = []
    real_commit = loop.consumer.commit

    def counting_commit(offsets: Any = None) -> None:
        commits.append(dict(offsets))
        real_commit(offsets)

    loop.consumer.commit = counting_commit  # type: ignore[method-assign]
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 6
    assert store.counts()["crashes"] == 3
    c = EmbeddedConsumer(log, "inspect", ["dead"], session_timeout_s=2.0)
    dead = c.poll(1.0, max_records=100)
    c.close()
    shas = [hashlib.sha256(j).hexdigest() for j in junk]
    assert [json.loads(r.value)["dump"]["sha256"] for r in dead] == shas
    # Throttled: commits only when the worker has nothing in flight (the first poll after
    # joining may return a single event, so there can be such a moment early) and at the end,
    # never one per event; offsets only move forward and end past the last event.
    ends = [off for c in commits for off in c.values()]
    assert ends == sorted(ends) and ends[-1] == 6
    assert len(commits) < 6
