"""Commit on revoke, on real Tansu: an analyzer busy with a two-partition topic, its offsets
committed only when idle, on revoke and on the way out (the interval is an hour); a second
analyzer joins the group and takes a partition over. The first commits what it finished on
that partition before giving it up, so the new owner starts after it: every crash is stored
once and no finished event is processed a second time (no duplicate store)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from crashfleet.stack import StackInfo
from ingest import LocalObjectStore
from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer
from store import CrashStore

from ..analyzer.test_loop import _event

pytestmark = [pytest.mark.services, pytest.mark.slow]

EVENTS = 24


class _Unhurried:
    """The processor, a little slower per event: the first analyzer is still busy (not idle,
    so not committing) when the second one's join rebalances the group."""

    def __init__(self, inner: EventProcessor, delay_s: float):
        self.inner, self.delay_s = inner, delay_s

    def process(self, value: bytes, *, reanalysis: str | None = None) -> Any:
        time.sleep(self.delay_s)
        return self.inner.process(value, reanalysis=reanalysis)


def _loop(bootstrap: str, group: str, topic: str, objects: LocalObjectStore,
          store: CrashStore, delay_s: float = 0.0) -> AnalyzerLoop:
    proc: Any = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                               block_cache_bytes=1 << 22)
    if delay_s:
        proc = _Unhurried(proc, delay_s)
    return AnalyzerLoop(
        LoopConfig(topic + "-analyzed", topic + "-dead", retry_backoff_s=0.05,
                   retry_backoff_max_s=0.5, in_flight=1, commit_interval_s=3600.0,
                   poll_timeout_s=0.2),
        consumer=KafkaConsumer(bootstrap, group, [topic], session_timeout_s=6.0),
        producer=KafkaProducer(bootstrap), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))


def _count(loop: AnalyzerLoop, outcome: str) -> float:
    return float(loop.metrics.events.labels(outcome=outcome)._value.get())


def test_a_revoked_partition_is_committed_before_its_new_owner_starts(
        services: StackInfo, unique: str, tmp_path: Path,
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    topic, group = f"revoke-{unique}", f"g-{unique}"
    KafkaAdmin(services.kafka_bootstrap).ensure_topics(
        {topic: 2, topic + "-analyzed": 1, topic + "-dead": 1})
    objects = LocalObjectStore(tmp_path / "objects")
    store = CrashStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    dumps = [p.read_bytes() for _, p in fixture_dumps[:3]]
    producer = KafkaProducer(services.kafka_bootstrap)
    for i in range(EVENTS):
        producer.send(topic, _event(objects, dumps[i % 3] + i.to_bytes(8, "big")),
                      key=f"host-{i}".encode())
    producer.flush()
    producer.close()

    first = _loop(services.kafka_bootstrap, group, topic, objects, store, delay_s=0.3)
    second = _loop(services.kafka_bootstrap, group, topic, objects, store)
    stops = (threading.Event(), threading.Event())
    threads = [threading.Thread(target=loop.run, args=(stop,))
               for loop, stop in zip((first, second), stops, strict=True)]
    threads[0].start()
    try:
        deadline = time.monotonic() + 180  # bounds on a hung test, not timings
        while _count(first, "stored") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _count(first, "stored") >= 3
        threads[1].start()  # joins: the group rebalances while the first is busy
        while store.counts()["crashes"] < EVENTS and time.monotonic() < deadline:
            time.sleep(0.2)
        while first.revoke_commits == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for stop in stops:
            stop.set()
        for t in threads:
            if t.is_alive() or t.ident is not None:
                t.join(60)
        for loop in (first, second):
            loop.consumer.close()
            loop.producer.close()
    assert store.counts()["crashes"] == EVENTS
    assert first.revoke_commits >= 1  # what it had finished was committed as it left
    stored = sum(_count(loop, "stored") for loop in (first, second))
    duplicates = sum(_count(loop, "duplicate") for loop in (first, second))
    assert (stored, duplicates) == (EVENTS, 0)
    assert _count(second, "stored") >= 1  # the partition did move
