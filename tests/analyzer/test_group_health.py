"""The consumer-group side of the analyzer's health: the revoke hook waits only briefly on
the consumer's I/O thread, and a member that holds no partition while its polls succeed says so
once (issue 17: analyzers silent for minutes after a Kafka freeze)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from analyzer.health import AssignmentWatch
from ingest import TopicPartition
from ingest.errors import RetryableIngestError

from .test_loop import _loop


class _UnackedProducer:
    """An announcement sent and not acknowledged (Kafka slow or just back): a flush raises
    after waiting its timeout; records how long each flush was allowed to wait."""

    def __init__(self) -> None:
        self.waits: list[float | None] = []

    def flush(self, timeout_s: float | None = None) -> None:
        self.waits.append(timeout_s)
        raise RetryableIngestError("Kafka did not acknowledge 1 records: timed out")

    def send(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_revoke_hook_does_not_wait_for_unacknowledged_announcements(tmp_path: Path) -> None:
    # The hook runs on kafka-python's I/O thread: a flush that waited 3 s there blocked the
    # heartbeats of the rebalance it is part of ("Rebalance listener ... took 3.009s" in the
    # chaos run). Unacknowledged announcements are not committed; nothing waits for them.
    loop, _, _ = _loop(tmp_path, object())
    producer = _UnackedProducer()
    loop.producer = producer  # type: ignore[assignment]
    tp = TopicPartition("reported", 0)
    loop._running = True
    loop._finished[tp] = 7
    assert loop._on_revoke({tp}, False) == {}  # not durable, so not committed
    # Asked with a short bound, not the loop's flush timeout (3 s, as in the chaos run).
    assert producer.waits == [loop.cfg.revoke_flush_s]
    assert loop.cfg.revoke_flush_s <= 0.5 < loop.cfg.flush_timeout_s


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_member_without_partitions_is_reported_once_then_its_return() -> None:
    clock = _Clock()
    registry = CollectorRegistry()
    watch = AssignmentWatch(registry, alarm_s=60.0, clock=clock)
    with capture_logs() as logs:
        watch.seen(0, "rebalancing")
        clock.now += 59
        watch.seen(0, "rebalancing")
        assert not [e for e in logs if e["event"] == "consumer.unassigned"]
        clock.now += 2
        watch.seen(0, "rebalancing")
        clock.now += 30
        watch.seen(0, "rebalancing")  # one line per state change, not per poll
        clock.now += 1
        watch.seen(3, "stable")
        watch.seen(3, "stable")
    events = [(e["event"], e.get("group_state"), e.get("unassigned_s")) for e in logs]
    assert events == [("consumer.unassigned", "rebalancing", 61.0),
                      ("consumer.assigned", None, 92.0)]
    assert registry.get_sample_value("crashfleet_analyzer_partitions_assigned") == 3
    assert not watch.alarmed
