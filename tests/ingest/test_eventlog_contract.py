"""One contract, two backends: the embedded SQLite log and the real Kafka broker (Tansu).

Correctness is derived from what consumers receive, never from end offsets (Tansu reports
too-low high watermarks after batched produces).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ingest import Record, TopicPartition


def _drain(consumer: Any, want: int, timeout: float = 30.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll(0.5, max_records=50)
    return got


def _produce(backend: Any, topic: str, n: int, keys: int = 5) -> None:
    producer = backend.producer()
    for i in range(n):
        producer.send(topic, f"v{i}".encode(), key=f"k{i % keys}".encode(),
                      headers=[("event-type", b"test")])
    producer.flush(30)


def test_produce_consume_in_group_keeps_key_order(log_backend: Any, unique: str) -> None:
    topic = f"t-{unique}"
    log_backend.admin.ensure_topics({topic: 3})
    log_backend.admin.ensure_topics({topic: 3})  # idempotent
    _produce(log_backend, topic, 40)
    consumer = log_backend.consumer(f"g-{unique}", [topic])
    got = _drain(consumer, 40)
    values = [r.value.decode() for r in got]
    assert sorted(values, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(40)]
    assert len(values) == len(set(values)) == 40
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    partitions_of_key: dict[bytes | None, set[int]] = defaultdict(set)
    for r in got:
        by_key[r.key].append(int(r.value[1:]))
        partitions_of_key[r.key].add(r.partition)
        assert r.headers == (("event-type", b"test"),)
        assert r.timestamp_ms > 1_600_000_000_000
    for key, seq in by_key.items():
        assert seq == sorted(seq), f"order broken for key {key!r}"
        assert len(partitions_of_key[key]) == 1
    assert {r.partition for r in got} <= {0, 1, 2}


def test_restart_resumes_exactly_at_committed_offset(log_backend: Any, unique: str) -> None:
    topic, group = f"t-{unique}", f"g-{unique}"
    log_backend.admin.ensure_topics({topic: 2})
    _produce(log_backend, topic, 30, keys=2)

    first = log_backend.consumer(group, [topic])
    seen = _drain(first, 30)
    assert len(seen) == 30
    # Commit a point in the middle of each partition: "processed" up to there only.
    per_part: dict[int, list[Record]] = defaultdict(list)
    for r in seen:
        per_part[r.partition].append(r)
    committed = {TopicPartition(topic, p): rs[len(rs) // 2].offset for p, rs in per_part.items()}
    first.commit(committed)
    first.close()

    second = log_backend.consumer(group, [topic])
    again = _drain(second, 30 - sum(len(rs) // 2 for rs in per_part.values()))
    expected = {(r.partition, r.offset) for r in seen
                if r.offset >= committed[TopicPartition(topic, r.partition)]}
    assert {(r.partition, r.offset) for r in again} == expected
    for tp, off in committed.items():
        assert min(r.offset for r in again if r.partition == tp.partition) == off
    # Commit everything; a third member finds nothing left.
    second.commit()
    second.close()
    third = log_backend.consumer(group, [topic])
    assert _drain(third, 1, timeout=8.0) == []


def test_group_members_split_partitions(log_backend: Any, unique: str) -> None:
    topic, group = f"t-{unique}", f"g-{unique}"
    log_backend.admin.ensure_topics({topic: 4})
    _produce(log_backend, topic, 40, keys=8)
    a = log_backend.consumer(group, [topic])
    b = log_backend.consumer(group, [topic])
    got: dict[str, list[Record]] = {"a": [], "b": []}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got["a"] += a.poll(0.3)
        got["b"] += b.poll(0.3)
        sa, sb = a.assignment(), b.assignment()
        if sa and sb and not sa & sb and len(sa | sb) == 4:
            break
    sa, sb = a.assignment(), b.assignment()
    assert sa and sb, f"both members need partitions: {sa} {sb}"
    assert not sa & sb
    assert sa | sb == {TopicPartition(topic, p) for p in range(4)}
    # Each member reads only its own partitions once the split settled.
    while time.monotonic() < deadline:
        got["a"] += a.poll(0.3)
        got["b"] += b.poll(0.3)
        if len({r.value for r in got["a"] + got["b"]}) == 40:
            break
    assert len({r.value for r in got["a"] + got["b"]}) == 40


def test_paused_partitions_return_nothing_until_resumed(log_backend: Any, unique: str) -> None:
    """The analyzer waits out an outage with its partitions paused and keeps polling: paused
    partitions deliver nothing (and skip nothing), resumed ones continue where they were."""
    topic = f"t-{unique}"
    log_backend.admin.ensure_topics({topic: 1})
    _produce(log_backend, topic, 10, keys=1)
    consumer = log_backend.consumer(f"g-{unique}", [topic])
    first: list[Record] = []
    deadline = time.monotonic() + 30
    while not first and time.monotonic() < deadline:
        first = consumer.poll(0.5, max_records=1)
    assert len(first) == 1, "nothing delivered"
    tp = TopicPartition(topic, 0)
    consumer.pause(consumer.assignment())
    consumer.pause([TopicPartition(topic, 99)])  # not assigned: ignored
    for _ in range(4):
        assert consumer.poll(0.3, max_records=50) == []
    consumer.resume({tp, TopicPartition(topic, 99)})
    rest = _drain(consumer, 10 - len(first))
    offsets = [r.offset for r in first + rest]
    assert offsets == list(range(10))
