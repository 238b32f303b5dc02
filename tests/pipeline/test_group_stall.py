"""A member of the analyzers' group that holds no partition while the broker answers, on
real Tansu (issue 17): two analyzers on a one-partition topic; the idle one says so once
(``consumer.unassigned``, its gauge at 0, the member state kafka-python reports), and when
the other leaves, it takes the partition over and says that too."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from analyzer.metrics import AnalyzerMetrics
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from crashfleet.stack import StackInfo
from ingest import LocalObjectStore
from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer
from store import CrashStore

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _loop(bootstrap: str, group: str, topic: str, tmp: Path) -> AnalyzerLoop:
    store = CrashStore(f"sqlite:///{tmp / 'store.sqlite'}")
    store.migrate()
    proc = EventProcessor(objects=LocalObjectStore(tmp / "objects"), store=store,
                          report_suffix=".report.json", block_cache_bytes=1 << 20)
    return AnalyzerLoop(
        LoopConfig(topic + "-analyzed", topic + "-dead", retry_backoff_s=0.05,
                   retry_backoff_max_s=0.5, in_flight=1, commit_interval_s=0.0,
                   poll_timeout_s=0.2, unassigned_alarm_s=1.0),
        consumer=KafkaConsumer(bootstrap, group, [topic], session_timeout_s=6.0),
        producer=KafkaProducer(bootstrap), processor=proc, store=store,
        metrics=AnalyzerMetrics(CollectorRegistry()))


def _until(cond: object, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s  # a bound on a hung test, not a timing
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def _assigned(loop: AnalyzerLoop) -> float:
    return float(loop.metrics.assignment.gauge._value.get())


def test_an_idle_member_is_reported_and_takes_over_when_the_other_leaves(
        services: StackInfo, unique: str, tmp_path: Path) -> None:
    topic, group = f"stall-{unique}", f"g-{unique}"
    KafkaAdmin(services.kafka_bootstrap).ensure_topics(
        {topic: 1, topic + "-analyzed": 1, topic + "-dead": 1})
    loops = [_loop(services.kafka_bootstrap, group, topic, tmp_path) for _ in range(2)]
    stops = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=lp.run, args=(st,)) for lp, st in zip(loops, stops,
                                                                           strict=True)]
    with capture_logs() as logs:
        try:
            for t in threads:
                t.start()
            _until(lambda: any(lp.metrics.assignment.alarmed for lp in loops)
                   and sum(_assigned(lp) for lp in loops) == 1)
            idle = next(lp for lp in loops if lp.metrics.assignment.alarmed)
            busy = next(lp for lp in loops if lp is not idle)
            assert (_assigned(idle), _assigned(busy)) == (0, 1)
            assert not busy.metrics.assignment.alarmed
            i = loops.index(busy)
            stops[i].set()
            threads[i].join(60)
            busy.consumer.close()  # leaves the group: the idle member takes the partition
            _until(lambda: _assigned(idle) == 1)
            assert _assigned(idle) == 1 and not idle.metrics.assignment.alarmed
        finally:
            for st in stops:
                st.set()
            for t in threads:
                if t.ident is not None:
                    t.join(60)
            for lp in loops:
                lp.consumer.close()
                lp.producer.close()
    # At most once per member (both may be alarmed while the first join still runs, with the
    # alarm at 1 s), never once per poll; each alarm is followed by its end.
    unassigned = [e for e in logs if e["event"] == "consumer.unassigned"]
    assert 1 <= len(unassigned) <= 2
    assert {e["group_state"] for e in unassigned} <= {"rebalancing", "stable"}
    assigned = [e for e in logs if e["event"] == "consumer.assigned"]
    assert len(assigned) == len(unassigned) and {e["partitions"] for e in assigned} == {1}
