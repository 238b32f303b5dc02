"""The agent against the real S3 server (SeaweedFS) and the real broker (Tansu).

Outages are real: the test stops its own S3 or Kafka process and starts it again. Events
are counted by consuming them from the broker, never from end offsets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crashfleet.stack import Stack, StackInfo, free_port
from crashfleet.wiring.agent import build_agent
from foundation.settings import Settings, load_settings
from ingest.events import decode_crash_reported
from ingest.kafka import KafkaAdmin, KafkaConsumer
from ingest.s3 import S3ObjectStore

pytestmark = pytest.mark.services
MIB = 1024 * 1024


def _settings(tmp_path: Path, kafka: str, s3: str, bucket: str, topic: str,
              **agent: Any) -> Settings:
    base = load_settings(None, env={})
    agent_fields = {"watch_dirs": (str(tmp_path / "crash"),), "state_dir": str(tmp_path / "state"),
                    "stable_for_s": 0.0, "part_size_mib": 5, "retry_initial_s": 0.05,
                    "retry_max_s": 0.2, **agent}
    return dataclasses.replace(
        base,
        kafka=dataclasses.replace(base.kafka, bootstrap_servers=(kafka,), request_timeout_s=3.0,
                                  topic_crash_reported=topic),
        s3=dataclasses.replace(base.s3, endpoint_url=s3, bucket=bucket,
                               addressing_style="path", connect_timeout_s=1.0,
                               read_timeout_s=5.0, max_attempts=1),
        agent=dataclasses.replace(base.agent, **agent_fields),
    )


def _env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    a = s.agent
    env.update({
        "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS": ",".join(s.kafka.bootstrap_servers),
        "CRASHFLEET_KAFKA_REQUEST_TIMEOUT_S": str(s.kafka.request_timeout_s),
        "CRASHFLEET_KAFKA_TOPIC_CRASH_REPORTED": s.kafka.topic_crash_reported,
        "CRASHFLEET_S3_ENDPOINT_URL": s.s3.endpoint_url,
        "CRASHFLEET_S3_BUCKET": s.s3.bucket,
        "CRASHFLEET_S3_ADDRESSING_STYLE": "path",
        "CRASHFLEET_AGENT_WATCH_DIRS": ",".join(a.watch_dirs),
        "CRASHFLEET_AGENT_STATE_DIR": a.state_dir,
        "CRASHFLEET_AGENT_STABLE_FOR_S": str(a.stable_for_s),
        "CRASHFLEET_AGENT_PART_SIZE_MIB": str(a.part_size_mib),
        "CRASHFLEET_AGENT_UPLOAD_CONCURRENCY": str(a.upload_concurrency),
        "CRASHFLEET_AGENT_BANDWIDTH_LIMIT_MIBPS": str(a.bandwidth_limit_mibps),
        "CRASHFLEET_LOG_FORMAT": "json",
    })
    return env


def _debian_dump(root: Path, stamp: str, data: bytes, dmesg: bytes | None = None) -> Path:
    d = root / stamp
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"dump.{stamp}"
    p.write_bytes(data)
    if dmesg is not None:
        (d / f"dmesg.{stamp}").write_bytes(dmesg)
    return p


def _consume(bootstrap: str, topic: str, want: int, settle_s: float = 3.0,
             timeout: float = 60.0) -> list[Any]:
    """Every event on ``topic`` (waiting for ``want``, then ``settle_s`` more for extras)."""
    consumer = KafkaConsumer(bootstrap, f"check-{time.monotonic_ns()}", [topic],
                             session_timeout_s=6.0)
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            got += consumer.poll(0.5)
        settle = time.monotonic() + settle_s
        while time.monotonic() < settle:
            got += consumer.poll(0.5)
    finally:
        consumer.close()
    return [decode_crash_reported(r.value) for r in got]


@pytest.fixture
def topic(services: StackInfo, unique: str) -> str:
    name = f"crash-reported-{unique}"
    admin = KafkaAdmin(services.kafka_bootstrap)
    admin.ensure_topics({name: 3})
    admin.close()
    return name


def _store(s: Settings) -> S3ObjectStore:
    return S3ObjectStore.from_settings(s.s3)


def test_ships_layouts_once_with_dmesg_and_metrics(tmp_path: Path, services: StackInfo,
                                                   s3_bucket: str, topic: str) -> None:
    crash = tmp_path / "crash"
    a = _debian_dump(crash, "202611251203", os.urandom(3 * MIB), dmesg=b"[    0.0] Linux\n")
    rhel = crash / "127.0.0.1-2026-11-25-12:03:44"
    rhel.mkdir()
    (rhel / "vmcore").write_bytes(os.urandom(7 * MIB))
    (rhel / "vmcore-dmesg.txt").write_bytes(b"rhel log\n")
    prom = tmp_path / "agent.prom"
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic,
                  metrics_textfile=str(prom))
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    assert agent.run_once() is True  # a second pass ships nothing again

    events = _consume(services.kafka_bootstrap, topic, 2)
    assert len(events) == 2
    by_path = {e.source_path: e for e in events}
    ev = by_path[str(a)]
    sha = hashlib.sha256(a.read_bytes()).hexdigest()
    assert ev.dump.sha256 == sha and ev.dump.key == f"dumps/{sha}"
    assert ev.layout == "debian-kdump-tools" and ev.crash_time == "2026-11-25T12:03:00"
    assert ev.host.machine_id == Path("/etc/machine-id").read_text().strip()
    store = _store(s)
    assert store.head(f"dumps/{sha}").size == 3 * MIB  # type: ignore[union-attr]
    assert store.get_range(ev.dump.dmesg_key or "", 0, 100) == b"[    0.0] Linux\n"
    rh = by_path[str(rhel / "vmcore")]
    assert rh.layout == "rhel-kdump" and rh.dump.size == 7 * MIB
    assert store.get_range(rh.dump.dmesg_key or "", 0, 100) == b"rhel log\n"

    from prometheus_client.parser import text_string_to_metric_families

    samples = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
               for fam in text_string_to_metric_families(prom.read_text())
               for smp in fam.samples}
    assert samples[("crashfleet_agent_dumps_shipped_total", ())] == 2
    assert samples[("crashfleet_agent_dumps_detected_total", ())] == 2
    assert samples[("crashfleet_agent_uploaded_bytes_total", ())] == 10 * MIB
    assert samples[("crashfleet_agent_backlog", (("kind", "events"),))] == 0
    assert samples[("crashfleet_agent_last_success_timestamp_seconds", ())] > 1.7e9


def test_sigkill_mid_upload_resumes_with_parts_reused(tmp_path: Path, services: StackInfo,
                                                      s3_bucket: str, topic: str) -> None:
    size = 40 * MIB + 12345
    data = os.urandom(size)
    _debian_dump(tmp_path / "crash", "202611251300", data)
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic,
                  bandwidth_limit_mibps=8.0, upload_concurrency=1)
    cmd = [sys.executable, "-m", "crashfleet.cli", "agent", "--once"]
    proc = subprocess.Popen(cmd, env=_env(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = Path(s.agent.state_dir) / "journal.sqlite"
    import sqlite3

    deadline = time.monotonic() + 60
    parts = 0
    while time.monotonic() < deadline and parts < 3:
        time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"agent exited early ({proc.returncode}): {proc.stderr.read()!r}")
        if journal.exists():
            try:
                with sqlite3.connect(journal) as db:
                    row = db.execute("SELECT parts FROM dumps").fetchone()
            except sqlite3.OperationalError:  # the agent is still creating its tables
                continue
            parts = len(json.loads(row[0])) if row else 0
    assert parts >= 3, "upload did not make progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    sha = hashlib.sha256(data).hexdigest()
    store = _store(s)
    assert store.head(f"dumps/{sha}") is None  # not complete yet

    s2 = dataclasses.replace(s, agent=dataclasses.replace(s.agent, bandwidth_limit_mibps=0.0))
    r = subprocess.run(cmd, env=_env(s2), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    uploaded = [json.loads(line) for line in r.stderr.splitlines()
                if '"dump.uploaded"' in line]
    assert len(uploaded) == 1
    assert uploaded[0]["reused_parts"] >= 3  # resumed, not restarted
    assert uploaded[0]["sent_bytes"] == size - uploaded[0]["reused_parts"] * 5 * MIB
    assert store.head(f"dumps/{sha}").size == size  # type: ignore[union-attr]
    assert store.get_range(f"dumps/{sha}", size - 100, 100) == data[-100:]
    assert [k.key for k in store.list_objects("dumps/")] == [f"dumps/{sha}"]
    events = _consume(services.kafka_bootstrap, topic, 1)
    assert [e.dump.sha256 for e in events] == [sha]


def test_s3_outage_backlog_grows_then_drains(tmp_path: Path, services: StackInfo,
                                             topic: str) -> None:
    port = free_port()
    s3 = Stack(tmp_path / "s3", services=("s3",), s3_port=port)
    info = s3.up(timeout=120)
    try:
        s = _settings(tmp_path, services.kafka_bootstrap, info.s3_endpoint, "outage", topic)
        store = _store(s)
        store.ensure_bucket()
        agent = build_agent(s, registry=CollectorRegistry())
        s3.down()
        for i in range(3):
            _debian_dump(tmp_path / "crash", f"20261125140{i}", os.urandom(MIB + i))
        assert agent.run_once() is False
        counts = agent.journal.counts()
        assert counts["failed"] == 3 and counts["outbox"] == 0
        assert agent.metrics.backlog.labels(kind="dumps")._value.get() == 3
        s3.up(timeout=120)  # same data directory, same port
        assert agent.run_once() is True
        assert len(list(store.list_objects("dumps/"))) == 3
        assert len(_consume(services.kafka_bootstrap, topic, 3)) == 3
    finally:
        s3.down()


def test_kafka_outage_events_wait_then_arrive_once_in_order(tmp_path: Path,
                                                            services: StackInfo,
                                                            s3_bucket: str) -> None:
    port = free_port()
    kafka = Stack(tmp_path / "kafka", services=("kafka",), kafka_port=port)
    info = kafka.up(timeout=60)
    try:
        s = _settings(tmp_path, info.kafka_bootstrap, services.s3_endpoint, s3_bucket,
                      "crash-reported")
        agent = build_agent(s, registry=CollectorRegistry())
        kafka.down()
        paths = [_debian_dump(tmp_path / "crash", f"20261125150{i}", os.urandom(MIB + i))
                 for i in range(4)]
        assert agent.run_once() is False
        counts = agent.journal.counts()
        assert counts["outbox"] == 4 and counts["uploaded"] == 4
        kafka.up(timeout=60)  # a fresh (memory) broker on the same port
        admin = KafkaAdmin(info.kafka_bootstrap)
        admin.ensure_topics({"crash-reported": 1})  # one partition: order is observable
        admin.close()
        assert agent.run_once() is True
        events = _consume(info.kafka_bootstrap, "crash-reported", 4)
        assert [e.source_path for e in events] == [str(p) for p in paths]
    finally:
        kafka.down()


def test_hundred_dumps_incomplete_files_and_planted_symlink(tmp_path: Path,
                                                            services: StackInfo,
                                                            s3_bucket: str, topic: str) -> None:
    crash = tmp_path / "crash"
    for i in range(100):
        _debian_dump(crash, f"202611{25 + i // 60:02d}16{i % 60:02d}",
                     os.urandom(4096) + i.to_bytes(4, "big"))
    incomplete = crash / "202611251800"
    incomplete.mkdir()
    (incomplete / "dump-incomplete").write_bytes(os.urandom(5000))
    rhel = crash / "127.0.0.1-2026-11-25-18:01:00"
    rhel.mkdir()
    (rhel / "vmcore-incomplete").write_bytes(os.urandom(5000))
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    (crash / "vmcore").symlink_to(secret)

    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic)
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    store = _store(s)
    assert len(list(store.list_objects("dumps/"))) == 100
    assert agent.metrics.refused._value.get() == 1
    refused = [r for r in agent.journal.by_state("refused")]
    assert [(r.path, r.last_error) for r in refused] == [(str(crash / "vmcore"),
                                                          "symbolic link")]
    # Renamed when finished: now shipped.
    os.rename(incomplete / "dump-incomplete", incomplete / "dump.202611251800")
    os.rename(rhel / "vmcore-incomplete", rhel / "vmcore")
    assert agent.run_once() is True
    assert len(list(store.list_objects("dumps/"))) == 102
    events = _consume(services.kafka_bootstrap, topic, 102)
    assert len(events) == 102 and len({e.event_id for e in events}) == 102
    assert not any(secret.read_text().encode() in store.get_range(o.key, 0, 10**6)
                   for o in store.list_objects("dumps/") if o.size < 10**6)


def test_log_only_ships_no_memory_image(tmp_path: Path, services: StackInfo, s3_bucket: str,
                                        topic: str) -> None:
    _debian_dump(tmp_path / "crash", "202611251900", os.urandom(2 * MIB), dmesg=b"oops\n")
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic,
                  content="log-only")
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    (ev,) = _consume(services.kafka_bootstrap, topic, 1)
    assert ev.dump.content == "log-only" and ev.dump.key is None
    store = _store(s)
    assert [o.key for o in store.list_objects("dumps/")] == [ev.dump.dmesg_key]
    assert store.get_range(ev.dump.dmesg_key or "", 0, 10) == b"oops\n"


@pytest.mark.parametrize(("policy", "extra", "kept"),
                         [("delete", {}, 0), ("limit", {"retention_keep_newest": 2}, 2),
                          ("limit", {"retention_max_bytes": 3 * 4096}, 3), ("keep", {}, 5)])
def test_retention(tmp_path: Path, services: StackInfo, s3_bucket: str, topic: str,
                   policy: str, extra: dict[str, int], kept: int) -> None:
    crash = tmp_path / "crash"
    for i in range(5):
        _debian_dump(crash, f"20261125200{i}", os.urandom(4096))
        os.utime(crash / f"20261125200{i}" / f"dump.20261125200{i}", (1e9 + i, 1e9 + i))
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic,
                  retention=policy, **extra)
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    left = sorted(p.name for p in crash.glob("*/dump.*"))
    # The newest dumps (by the time kdump wrote them) are the ones kept.
    assert left == [f"dump.20261125200{i}" for i in range(5 - kept, 5)]
    assert len(list(_store(s).list_objects("dumps/"))) == 5  # all shipped regardless


def test_flattened_dump_ships_with_its_index_built_while_streaming(
        tmp_path: Path, services: StackInfo, s3_bucket: str, topic: str,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    from vmcore.analyze import analyze
    from vmcore.formats.flattened import FlatIndex, build_index
    from vmcore.source import LocalFileSource, ObjectStoreSource

    flat = [(m, d) for m, d in fixture_dumps if m["format"] == "kdump-flattened"]
    assert flat, "no flattened dump in the fixture corpus"
    m, dump = flat[0]
    _debian_dump(tmp_path / "crash", "202611252100", dump.read_bytes())
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic)
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    (ev,) = _consume(services.kafka_bootstrap, topic, 1)
    assert ev.dump.format == "flattened" and ev.dump.index_key == f"{ev.dump.key}.flatindex"
    assert ev.kernel_release == m["kernel_release"] and ev.build_id == m["build_id"]
    store = _store(s)
    stored = store.get_range(ev.dump.index_key, 0, 64 * MIB)
    with LocalFileSource(dump) as src:
        assert stored == build_index(src).to_bytes()  # the one-pass source indexer agrees
    # With the stored index, analysis from S3 reads a small part of the dump.
    remote = ObjectStoreSource(store, ev.dump.key or "")
    report = analyze(remote, flat_index=FlatIndex.from_bytes(stored)).report
    assert report.kernel.release == m["kernel_release"]
    assert remote.bytes_fetched < ev.dump.size // 4


def test_corrupt_flattened_dump_still_ships_without_an_index(
        tmp_path: Path, services: StackInfo, s3_bucket: str, topic: str,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """A record header that lies (disk error, hostile file) ends the index built while
    streaming; the dump itself still ships, byte for byte, and is announced. Before, the
    index builder's error escaped the upload and stopped the agent on every restart."""
    import struct

    from vmcore.errors import CorruptDump
    from vmcore.formats.flattened import build_index
    from vmcore.source import BytesSource

    flat = [(m, d) for m, d in fixture_dumps if m["format"] == "kdump-flattened"]
    assert flat, "no flattened dump in the fixture corpus"
    data = bytearray(flat[0][1].read_bytes())
    at = 4096  # the first record header; hop over payloads to one halfway through the file,
    while at < len(data) // 2:  # far past the header blocks the agent reads for its facts
        at += 16 + struct.unpack_from(">q", data, at + 8)[0]
    struct.pack_into(">qq", data, at, 0, -7)  # a negative record size
    with pytest.raises(CorruptDump):
        build_index(BytesSource(bytes(data)))
    dump = _debian_dump(tmp_path / "crash", "202611252130", bytes(data))
    good = _debian_dump(tmp_path / "crash", "202611252131", os.urandom(MIB))
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic)
    agent = build_agent(s, registry=CollectorRegistry())
    assert agent.run_once() is True
    events = {ev.dump.sha256: ev for ev in _consume(services.kafka_bootstrap, topic, 2)}
    assert len(events) == 2
    sha = hashlib.sha256(dump.read_bytes()).hexdigest()
    ev = events[sha]
    assert ev.dump.format == "flattened" and ev.dump.index_key is None
    assert _store(s).get_range(ev.dump.key or "", 0, len(data)) == bytes(data)
    assert hashlib.sha256(good.read_bytes()).hexdigest() in events


def test_metrics_port_serves_the_agent_metrics(tmp_path: Path, services: StackInfo,
                                               s3_bucket: str, topic: str) -> None:
    import urllib.request

    from crashfleet.wiring.agent import run_agent

    _debian_dump(tmp_path / "crash", "202611252200", os.urandom(MIB))
    port = free_port()
    s = _settings(tmp_path, services.kafka_bootstrap, services.s3_endpoint, s3_bucket, topic,
                  metrics_port=port)
    agent = build_agent(s, registry=CollectorRegistry())
    assert run_agent(agent, s, once=True) == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "crashfleet_agent_dumps_shipped_total 1.0" in text
    assert 'crashfleet_agent_backlog{kind="dumps"} 0.0' in text
