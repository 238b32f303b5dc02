"""The dead-letter topic, read back: what was dead-lettered and why, and re-entering events
into the pipeline once their cause is fixed (a decoder fix, a dump re-uploaded).

The loop (:mod:`analyzer.service`) writes each dead letter as the event's original bytes and
key with headers: ``error``, ``attempts``, ``failure-key`` (the failures-table key: the event
id, or ``raw-<sha256>`` for bytes that name none), ``dead-lettered-at`` (ms since the epoch)
and the source topic/partition/offset. Replay re-publishes the original bytes and key to the
crash-reported topic: the store keys crashes by event id, so replaying an event twice, or one
that was stored meanwhile, stores nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from analyzer.service import failure_key
from ingest.eventlog import EventConsumer, EventProducer, Record
from ingest.events import decode_crash_reported
from ingest.schema import SchemaError

__all__ = ["DeadLetterEntry", "read_dead_letters", "replay", "select"]


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead letter; ``at`` is when it was dead-lettered (UTC)."""

    key: str
    event_id: str | None
    reason: str
    attempts: int
    at: datetime
    source: str
    record: Record


def _entry(record: Record) -> DeadLetterEntry:
    headers = dict(record.headers)
    try:
        event_id: str | None = decode_crash_reported(record.value).event_id
    except SchemaError:
        event_id = None
    key = headers.get("failure-key", b"").decode(errors="replace") \
        or failure_key(event_id, record.value)
    try:
        at_ms = int(headers.get("dead-lettered-at", b"") or record.timestamp_ms)
    except ValueError:
        at_ms = record.timestamp_ms
    try:
        attempts = int(headers.get("attempts", b"0"))
    except ValueError:
        attempts = 0
    src = "/".join(headers.get(h, b"?").decode(errors="replace")
                   for h in ("source-topic", "source-partition", "source-offset"))
    return DeadLetterEntry(key=key, event_id=event_id,
                           reason=headers.get("error", b"").decode(errors="replace"),
                           attempts=attempts, at=datetime.fromtimestamp(at_ms / 1000, UTC),
                           source=src, record=record)


def read_dead_letters(consumer: EventConsumer, *, limit: int = 100_000,
                      idle_s: float = 3.0, max_s: float = 60.0) -> list[DeadLetterEntry]:
    """Every dead letter ``consumer`` (a throwaway group on the dead-letter topic, never
    committed) can read, the latest per failure key, oldest first. Reading ends when the
    partitions are drained (or nothing arrives for ``idle_s``), at ``limit`` records or
    after ``max_s``."""
    latest: dict[str, DeadLetterEntry] = {}
    started = last = time.monotonic()
    seen = 0
    while seen < limit and time.monotonic() - started < max_s:
        records = consumer.poll(0.5, max_records=min(500, limit - seen))
        if records:
            last = time.monotonic()
            seen += len(records)
            for r in records:
                e = _entry(r)
                latest[e.key] = e
            continue
        if (consumer.assignment() and consumer.lag() == 0) or time.monotonic() - last >= idle_s:
            break
    return sorted(latest.values(), key=lambda e: (e.at, e.key))


def select(entries: Iterable[DeadLetterEntry], *, since: datetime | None = None,
           reason: str | None = None, key: str | None = None) -> list[DeadLetterEntry]:
    """The entries dead-lettered at or after ``since`` whose reason contains ``reason``
    (case-insensitive) and, with ``key``, whose failure key or event id is ``key``."""
    out = []
    for e in entries:
        if since is not None and e.at < since:
            continue
        if reason is not None and reason.lower() not in e.reason.lower():
            continue
        if key is not None and key not in (e.key, e.event_id):
            continue
        out.append(e)
    return out


def replay(entries: Iterable[DeadLetterEntry], producer: EventProducer, topic: str) -> int:
    """Re-publish each entry's original event to ``topic`` (durably); returns how many."""
    n = 0
    for e in entries:
        producer.send(topic, e.record.value, key=e.record.key,
                      headers=[("replayed-from", e.source.encode()),
                               ("failure-key", e.key.encode())])
        n += 1
    producer.flush()
    return n
