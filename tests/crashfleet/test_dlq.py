"""``crashfleet dlq``: failure rows keyed by event id, list/show filters, and a replay that
stores the event once however often it is replayed (embedded event log, real dump)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig, failure_key
from analyzer.worker import EventProcessor
from crashfleet.cli import main
from foundation.settings import Settings
from ingest import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer, LocalObjectStore
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from store import CrashStore
from store.schema import failures
from vmcore.analyze import Analysis
from vmcore.source import ObjectStoreSource

K = Settings().kafka


def _loop(data: Path, objects: LocalObjectStore, store: CrashStore) -> AnalyzerLoop:
    log = EmbeddedLog(data / "events.sqlite")
    proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                          block_cache_bytes=1 << 22)
    return AnalyzerLoop(
        LoopConfig(K.topic_crash_analyzed, K.topic_dead_letter, retry_backoff_s=0.01,
                   retry_backoff_max_s=30.0, in_flight=1, commit_interval_s=0.0,
                   poll_timeout_s=0.2),
        consumer=EmbeddedConsumer(log, "g", [K.topic_crash_reported], session_timeout_s=2.0),
        producer=EmbeddedProducer(log), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_dead_letters_are_keyed_listed_and_replayed_once(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A decoder bug dead-letters a real dump (injected by patching the decoder: every known
    reproducer is fixed, so no real dump triggers one — mock on purpose); once 'fixed', a
    replay stores it, and a second replay stores nothing more."""
    import vmcore.analyze

    monkeypatch.delenv("CRASHFLEET_CONFIG", raising=False)
    objects = LocalObjectStore(tmp_path / "objects")
    store = CrashStore(f"sqlite:///{tmp_path / 'crashfleet.sqlite'}")
    store.migrate()
    dump = min((p for _, p in fixture_dumps), key=lambda p: p.stat().st_size)
    data = dump.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    objects.put(f"dumps/{sha}", data)
    event = CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                     key=f"dumps/{sha}"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z")
    producer = EmbeddedProducer(EmbeddedLog(tmp_path / "events.sqlite"))
    producer.send(K.topic_crash_reported, event.to_bytes(), key=b"k")
    producer.send(K.topic_crash_reported, b"{not json", key=b"k")
    producer.flush()

    real = vmcore.analyze.analyze

    def buggy(src: ObjectStoreSource, **kw: Any) -> Analysis:
        raise IndexError("index out of range")

    monkeypatch.setattr(vmcore.analyze, "analyze", buggy)
    loop = _loop(tmp_path, objects, store)
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 2
    loop.consumer.close()
    with store.engine.connect() as conn:
        keys = set(conn.execute(sa.select(failures.c.event_id)).scalars())
    raw_key = failure_key(None, b"{not json")
    assert keys == {event.event_id, raw_key}  # not topic/partition/offset

    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path))
    assert code == 0 and out.endswith("2 dead letters\n")
    assert event.event_id in out and raw_key in out
    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path), "--reason", "MALFORMED")
    assert code == 0 and raw_key in out and event.event_id not in out
    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path), "--since",
                     "2999-01-01T00:00:00Z")
    assert out.endswith("0 dead letters\n")
    code, out = _cli(capsys, "dlq", "show", event.event_id, "--data", str(tmp_path), "--json")
    (shown,) = json.loads(out)
    assert shown["reason"].startswith("decoder bug: IndexError") and shown["attempts"] == 1

    monkeypatch.setattr(vmcore.analyze, "analyze", real)  # the decoder is fixed
    for _ in range(2):  # replaying twice stores nothing twice
        code, out = _cli(capsys, "dlq", "replay", "--data", str(tmp_path), "--reason",
                         "decoder bug")
        assert code == 0 and out == "replayed 1 dead-lettered event\n"
    loop = _loop(tmp_path, objects, store)
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 2
    assert store.counts()["crashes"] == 1
    events = loop.metrics.events
    assert events.labels(outcome="stored")._value.get() == 1
    assert events.labels(outcome="duplicate")._value.get() == 1
    assert events.labels(outcome="dead_lettered")._value.get() == 0

    # Replay marked the failure row (twice); the store of the event resolved it.
    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path), "--json")
    marks = {r["key"]: r for r in json.loads(out)}
    assert marks[event.event_id]["replays"] == 2 and marks[event.event_id]["replayed_at"]
    assert marks[event.event_id]["resolved_at"] is not None
    assert marks[raw_key]["replays"] == 0 and marks[raw_key]["resolved_at"] is None
    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path), "--not-replayed")
    assert raw_key in out and event.event_id not in out and out.endswith("1 dead letter\n")
    code, out = _cli(capsys, "dlq", "list", "--data", str(tmp_path))
    assert "replayed 2x" in out
