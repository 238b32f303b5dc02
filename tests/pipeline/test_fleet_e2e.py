"""The fleet pipeline with every real component: two agents with different host identities ->
SeaweedFS (S3) -> Tansu (Kafka) -> two analyzer processes in one consumer group ->
PostgreSQL -> /metrics scraped. One analyzer is SIGKILLed mid-stream: nothing is lost and
nothing is counted twice."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from crashfleet.stack import StackInfo, free_port
from crashfleet.wiring.agent import build_agent
from foundation.settings import Settings, load_settings
from ingest.events import HostIdentity
from ingest.kafka import KafkaAdmin

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _settings(tmp: Path, services: StackInfo, bucket: str, topics: dict[str, str],
              store_url: str) -> Settings:
    base = load_settings(None, env={})
    return dataclasses.replace(
        base,
        kafka=dataclasses.replace(base.kafka, bootstrap_servers=(services.kafka_bootstrap,),
                                  request_timeout_s=5.0, **topics),
        s3=dataclasses.replace(base.s3, endpoint_url=services.s3_endpoint, bucket=bucket,
                               addressing_style="path"),
        store=dataclasses.replace(base.store, url=store_url),
        agent=dataclasses.replace(base.agent, watch_dirs=(str(tmp / "crash"),),
                                  state_dir=str(tmp / "state"), stable_for_s=0.0,
                                  part_size_mib=5),
    )


def _analyzer_env(s: Settings, port: int, group: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env.update({
        "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers[0],
        "CRASHFLEET_KAFKA_TOPIC_CRASH_REPORTED": s.kafka.topic_crash_reported,
        "CRASHFLEET_KAFKA_TOPIC_CRASH_ANALYZED": s.kafka.topic_crash_analyzed,
        "CRASHFLEET_KAFKA_TOPIC_DEAD_LETTER": s.kafka.topic_dead_letter,
        "CRASHFLEET_S3_ENDPOINT_URL": s.s3.endpoint_url,
        "CRASHFLEET_S3_BUCKET": s.s3.bucket,
        "CRASHFLEET_S3_ADDRESSING_STYLE": "path",
        "CRASHFLEET_STORE_URL": s.store.url,
        "CRASHFLEET_ANALYZER_GROUP_ID": group,
        "CRASHFLEET_ANALYZER_SESSION_TIMEOUT_S": "6",
        "CRASHFLEET_ANALYZER_METRICS_PORT": str(port),
        "CRASHFLEET_LOG_FORMAT": "json",
    })
    return env


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_two_agents_two_analyzers_postgres_metrics_and_a_killed_worker(
        tmp_path: Path, services: StackInfo, s3_bucket: str, postgres_db: str,
        unique: str, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    dumps = fixture_dumps
    uau = [(m, d) for m, d in dumps if m["scenario"] == "uau"]
    kernels = {str(m["kernel_release"]) for m, _ in uau}
    assert len(kernels) >= 2, "needs use-after-unload dumps from two kernel builds"
    # One dump per boot; the use-after-unload crashes of two kernel builds on two hosts.
    by_boot: dict[str, tuple[dict[str, object], Path]] = {}
    for m, d in dumps:
        by_boot.setdefault(str(m["boot"]), (m, d))
    chosen = list(by_boot.values())
    first_uau = {}
    for m, d in chosen:
        if m["scenario"] == "uau":
            first_uau.setdefault(m["kernel_release"], (m, d))
    uau_pair = list(first_uau.values())[:2]
    others = [(m, d) for m, d in chosen if m["scenario"] != "uau"]

    topics = {"topic_crash_reported": f"reported-{unique}",
              "topic_crash_analyzed": f"analyzed-{unique}",
              "topic_dead_letter": f"dead-{unique}"}
    admin = KafkaAdmin(services.kafka_bootstrap)
    admin.ensure_topics({topics["topic_crash_reported"]: 4,
                         topics["topic_crash_analyzed"]: 2, topics["topic_dead_letter"]: 1})
    admin.close()
    store_url = postgres_db.replace("postgresql://", "postgresql+psycopg://", 1)

    hosts = {"host-a": HostIdentity("host-a", "a" * 32, "boot-a"),
             "host-b": HostIdentity("host-b", "b" * 32, "boot-b")}
    expected = 0
    for i, (name, ident) in enumerate(hosts.items()):
        tmp = tmp_path / name
        crash = tmp / "crash"
        mine = [uau_pair[i], *others[i::2]]
        for j, (_m, d) in enumerate(mine):
            target = crash / f"20261125{10 + j:02d}00"
            target.mkdir(parents=True)
            shutil.copy(d, target / f"dump.20261125{10 + j:02d}00")
        expected += len(mine)
        s = _settings(tmp, services, s3_bucket, topics, store_url)
        agent = build_agent(s, registry=CollectorRegistry())
        agent.identity = ident
        assert agent.run_once() is True

    s = _settings(tmp_path, services, s3_bucket, topics, store_url)
    group = f"analyzers-{unique}"
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"analyzer-{i}.log" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "analyzer",
                               "--exit-when-idle", "120"],
                              env=_analyzer_env(s, port, group), stdout=subprocess.DEVNULL,
                              stderr=log.open("w")) for port, log in zip(ports, logs, strict=True)]
    engine = sa.create_engine(store_url)

    def stored() -> int:
        with engine.connect() as conn:
            try:
                return int(conn.execute(sa.text("SELECT count(*) FROM crashes")).scalar_one())
            except sa.exc.ProgrammingError:
                return 0  # not migrated yet

    try:
        deadline = time.monotonic() + 120
        while stored() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored() >= 1, "no analyzer stored anything"
        procs[0].send_signal(signal.SIGKILL)  # mid-stream: the survivor takes its partitions
        procs[0].wait(10)
        while stored() < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored() == expected, "\n".join(log.read_text()[-3000:] for log in logs)
        time.sleep(1.0)
        metrics = _scrape(ports[1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    assert procs[1].returncode == 0, logs[1].read_text()[-3000:]

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, count, findings FROM clusters ORDER BY count DESC")).all()
        crashes = conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM crashes")
                               ).one()
        uau_rows = conn.execute(sa.text(
            "SELECT count(DISTINCT machine_id), count(DISTINCT kernel_release) FROM crashes "
            "WHERE findings LIKE '%use-after-module-unload%'")).one()
    engine.dispose()
    assert crashes == (expected, expected)  # nothing lost, nothing twice
    uau_clusters = [r for r in rows if "use-after-module-unload(vendordeferio)" in r.findings]
    assert len(uau_clusters) == 1 and uau_clusters[0].count == 2
    assert tuple(uau_rows) == (2, 2)  # two hosts, two kernel builds
    assert sum(r.count for r in rows) == expected

    assert metrics[("crashfleet_module_unload_crashes_total",
                    (("module", "vendordeferio"),))] == 2
    assert sum(v for (name, _), v in metrics.items()
               if name == "crashfleet_crashes_total") == expected
    assert metrics[("crashfleet_cluster_crashes_total",
                    (("cluster", uau_clusters[0].id),))] == 2
