"""The event log contract: partitioned topics, consumer groups, committed offsets.

Implementations: :mod:`ingest.kafka` (any Kafka cluster) and :mod:`ingest.embedded_log`
(SQLite, for the single-machine default). Both give at-least-once delivery: a consumer that
stops before committing sees the uncommitted records again, and a restarted consumer resumes
exactly at its group's committed offsets. Both pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["EventConsumer", "EventProducer", "Record", "TopicAdmin", "TopicPartition"]


@dataclass(frozen=True, order=True)
class TopicPartition:
    """One partition of a topic."""

    topic: str
    partition: int


@dataclass(frozen=True)
class Record:
    """A record read from a partition; ``timestamp_ms`` is milliseconds since the epoch."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@runtime_checkable
class TopicAdmin(Protocol):
    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        """Create each topic with the given partition count unless it exists."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EventProducer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Queue a record; records with the same key go to the same partition, in order."""
        ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged by all in-sync replicas; raise
        (RetryableIngestError) when that does not happen within ``timeout_s``."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EventConsumer(Protocol):
    def poll(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        """Records from the partitions assigned to this member, at most ``max_records``;
        an empty list when none arrived within ``timeout_s``."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit the next offsets to read (default: the position after the last polled
        record of every assigned partition)."""
        ...

    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned to this member."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning records of these assigned partitions from ``poll`` (which still
        keeps the membership alive) until ``resume``; unassigned ones are ignored. A
        rebalance forgets the pause (as Kafka does)."""
        ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Undo ``pause``; unassigned partitions are ignored."""
        ...

    def lag(self) -> int | None:
        """Records in the assigned partitions not yet polled (None when unknown)."""
        ...

    def close(self) -> None: ...
