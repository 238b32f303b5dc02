"""A short fault campaign against the real stack: `crashfleet analyzer` processes with S3
(SeaweedFS behind a TCP forwarder) down, then Kafka (Tansu) frozen with SIGSTOP while a
stored crash waits to be announced and committed, then SIGTERM during that outage. The
process exits within 10 s, commits nothing unfinished, and the next start finishes the work:
0 lost, 0 dead-lettered, 0 stored twice."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from crashfleet.stack import StackInfo, free_port
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from ingest.kafka import KafkaAdmin, KafkaProducer
from ingest.s3 import S3ObjectStore

from ..outage import Outage

pytestmark = [pytest.mark.services, pytest.mark.slow]


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _until(cond: Callable[[], bool], what: str, limit_s: float = 90.0) -> None:
    """Wait for ``cond`` (a bound on a hung test, not a speed assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _gauge(port: int, name: str, labels: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return None


class _Setup(NamedTuple):
    env: dict[str, str]
    dumps: dict[str, Path]
    s3: Outage
    port: int
    count: Callable[[str], int]
    engine: sa.Engine


def _setup(tmp_path: Path, services: StackInfo, s3_bucket: str, unique: str,
           fixture_dumps: list[tuple[dict[str, object], Path]]) -> _Setup:
    """Three real dumps in S3 and announced on fresh topics; the analyzer's environment with
    S3 behind a forwarder and a SQLite store."""
    topics = {"REPORTED": f"reported-{unique}", "ANALYZED": f"analyzed-{unique}",
              "DEAD_LETTER": f"dead-{unique}"}
    admin = KafkaAdmin(services.kafka_bootstrap)
    admin.ensure_topics({topics["REPORTED"]: 2, topics["ANALYZED"]: 2,
                         topics["DEAD_LETTER"]: 1})
    admin.close()
    direct = S3ObjectStore(s3_bucket, endpoint_url=services.s3_endpoint, addressing_style="path")
    producer = KafkaProducer(services.kafka_bootstrap)
    dumps = {hashlib.sha256(p.read_bytes()).hexdigest(): p for _, p in fixture_dumps[:3]}
    for sha, path in dumps.items():
        direct.put(f"dumps/{sha}", path.read_bytes())
        event = CrashReported(
            event_id=crash_event_id(sha), schema_version=1,
            host=HostIdentity(f"h-{sha[:6]}", sha[:32], "b"),
            dump=DumpRef(sha256=sha, size=path.stat().st_size, format="unknown",
                         content="full", key=f"dumps/{sha}"),
            layout="spool", source_path="/spool/x", agent_version="t",
            reported_at="2026-11-25T12:00:00Z")
        producer.send(topics["REPORTED"], event.to_bytes(), key=sha[:32].encode())
    producer.flush()
    producer.close()

    u = urlsplit(services.s3_endpoint)
    s3 = Outage(u.hostname or "127.0.0.1", u.port or 80)
    store_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env.update({f"CRASHFLEET_KAFKA_TOPIC_CRASH_{k}" if k != "DEAD_LETTER" else
                "CRASHFLEET_KAFKA_TOPIC_DEAD_LETTER": v for k, v in topics.items()})
    env.update({
        "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
        "CRASHFLEET_KAFKA_REQUEST_TIMEOUT_S": "5",
        "CRASHFLEET_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3.port}",
        "CRASHFLEET_S3_BUCKET": s3_bucket, "CRASHFLEET_S3_ADDRESSING_STYLE": "path",
        "CRASHFLEET_S3_CONNECT_TIMEOUT_S": "1", "CRASHFLEET_S3_MAX_ATTEMPTS": "1",
        "CRASHFLEET_STORE_URL": store_url,
        "CRASHFLEET_ANALYZER_GROUP_ID": f"g-{unique}",
        "CRASHFLEET_ANALYZER_SESSION_TIMEOUT_S": "6",
        "CRASHFLEET_ANALYZER_RETRY_BACKOFF_S": "0.2",
        "CRASHFLEET_ANALYZER_RETRY_BACKOFF_MAX_S": "1",
        "CRASHFLEET_ANALYZER_METRICS_PORT": str(port),
        "CRASHFLEET_LOG_FORMAT": "json",
    })
    engine = sa.create_engine(store_url)

    def count(sql: str) -> int:
        with engine.connect() as conn:
            try:
                return int(conn.execute(sa.text(sql)).scalar_one())
            except sa.exc.OperationalError:
                return 0  # not migrated yet

    return _Setup(env, dumps, s3, port, count, engine)


def test_outages_and_sigterm_lose_nothing_and_exit_promptly(
        tmp_path: Path, services: StackInfo, s3_bucket: str, unique: str,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    env, dumps, s3, port, count, engine = _setup(tmp_path, services, s3_bucket, unique,
                                                 fixture_dumps)
    tansu = next(p.pid for p in services.processes if p.name == "kafka")
    log1 = tmp_path / "analyzer-1.log"
    s3.down()
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "analyzer"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log1.open("w"))
    try:
        _until(lambda: _gauge(port, "crashfleet_analyzer_dependency_up",
                              'dependency="object_store"') == 0, "S3 reported down")
        with _frozen(tansu):
            s3.up()  # S3 back while Kafka is frozen: the crash is stored, not announced
            _until(lambda: count("SELECT count(*) FROM crashes") >= 1, "a stored crash")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            exit_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        s3.close()
    text = log1.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert exit_s <= 10.0, f"SIGTERM took {exit_s:.1f}s with Kafka frozen"
    assert "event.dead_lettered" not in text
    assert text.count('"dependency.down"') <= 3, "one line per state change, not per retry"

    # The next start (S3 direct, Kafka back) finishes; the crash stored before the stop is
    # redelivered (not committed) and deduplicated by its event id.
    _restart_until_idle(tmp_path, env, services)
    assert count("SELECT count(*) FROM crashes") == len(dumps)
    assert count("SELECT count(DISTINCT event_id) FROM crashes") == len(dumps)
    assert count("SELECT sum(count) FROM clusters") == len(dumps)
    assert count("SELECT count(*) FROM failures") == 0
    engine.dispose()


def test_sigterm_during_a_read_from_a_frozen_s3_exits_promptly(
        tmp_path: Path, services: StackInfo, s3_bucket: str, unique: str,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """S3 accepts connections and never answers: the analyzer sits in a ranged read that
    only its 60 s read timeout would end. SIGTERM still ends the process within 10 s (the
    work is abandoned: nothing was committed), and the next start stores every crash once."""
    env, dumps, s3, _port, count, engine = _setup(tmp_path, services, s3_bucket, unique,
                                                  fixture_dumps)
    env.pop("CRASHFLEET_S3_MAX_ATTEMPTS")  # the defaults: 3 attempts, 60 s read timeout
    log1 = tmp_path / "analyzer-1.log"
    s3.blackhole()
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "analyzer"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log1.open("w"))
    try:
        _until(lambda: len(s3._conns) > 0, "the analyzer reading from S3")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        exit_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        s3.close()
    text = log1.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert exit_s <= 10.0, f"SIGTERM took {exit_s:.1f}s with S3 frozen"
    assert "analyzer.stop_forced" in text
    _restart_until_idle(tmp_path, env, services)
    assert count("SELECT count(*) FROM crashes") == len(dumps)
    assert count("SELECT sum(count) FROM clusters") == len(dumps)
    engine.dispose()


def _restart_until_idle(tmp_path: Path, env: dict[str, str], services: StackInfo) -> None:
    """Start the analyzer again with S3 reachable directly and let it run until idle; it
    must exit 0."""
    env["CRASHFLEET_S3_ENDPOINT_URL"] = services.s3_endpoint
    log2 = tmp_path / "analyzer-2.log"
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "analyzer",
                             "--exit-when-idle", "20"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log2.open("w"))
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log2.read_text()[-3000:]
