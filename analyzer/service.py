"""The analyzer's consumer loop: one event at a time (bounded memory), waiting out outages,
the dead-letter topic for bad events, offsets committed only after the store.

At-least-once end to end: a worker killed between storing and committing sees the event again
(in itself or another member of the group), and the store's unique event id turns the
redelivery into a no-op.

Transient is not permanent: when a dependency (object store, crash store, symbol source,
event log) does not answer, the event in hand is kept, the assigned partitions are paused and
polled (so the group keeps this member and its partitions), and the same event is tried again
after a capped exponential backoff, for as long as the outage lasts. Only an event or dump
that is itself wrong is dead-lettered. A stop request is honoured in every wait: nothing
unfinished is committed, and the next start resumes at the committed offset.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from analyzer.metrics import AnalyzerMetrics
from analyzer.worker import DeadLetter, EventProcessor, Processed, RetryLater
from foundation.backoff import backoff_s
from foundation.errors import is_retryable
from ingest.eventlog import EventConsumer, EventProducer, Record, TopicPartition
from store import CrashStore
from store.errors import StoreUnavailable

__all__ = ["REANALYZE_HEADER", "AnalyzerLoop", "LoopConfig", "failure_key"]

log = structlog.get_logger("crashfleet.analyzer")

# What a processed event proves answered (the event log is judged by its own calls).
_PROCESSING_DEPS = ("object_store", "store", "symbols")


@dataclass(frozen=True)
class LoopConfig:
    """What the loop needs from the settings (``AnalyzerSettings``, the only source of their
    defaults: built by ``crashfleet.wiring.analyzer.build_loop``); times in seconds.
    ``in_flight``: events processed at once (reads from S3 overlap in threads; results are
    taken, stored and announced in the order the events were polled); 1: one at a time.
    ``commit_interval_s``: finished offsets are committed at most this often (and always when
    idle, on a revoked partition's last event and on the way out); 0: after every event."""

    analyzed_topic: str
    dead_letter_topic: str
    retry_backoff_s: float
    retry_backoff_max_s: float
    in_flight: int
    commit_interval_s: float
    poll_timeout_s: float = 1.0
    # One flush waits at most this long, so a stop is seen while Kafka does not answer.
    flush_timeout_s: float = 3.0
    # No partition assigned for this long while polls succeed: one ``consumer.unassigned``
    # line (see ``AssignmentWatch``).
    unassigned_alarm_s: float = 60.0
    # On a revoke the announcements are made durable before their offsets are committed,
    # waiting at most this long: the hook runs on the consumer's I/O thread, whose
    # heartbeats wait meanwhile (acks take milliseconds when Kafka is well).
    revoke_flush_s: float = 0.5


def failure_key(event_id: str | None, raw: bytes) -> str:
    """The failures-table key of a dead-lettered event: its event id, or for an event too
    malformed to name one, ``raw-`` and the SHA-256 prefix of its bytes (the same bytes
    replayed give the same key)."""
    return event_id or "raw-" + hashlib.sha256(raw).hexdigest()[:40]


# The header ``crashfleet reanalyze`` puts on its events: the re-analysis request id.
REANALYZE_HEADER = "reanalyze-request"


def _reanalysis(record: Record) -> str | None:
    for name, value in record.headers:
        if name == REANALYZE_HEADER:
            return value.decode("ascii", errors="replace")[:64] or None
    return None


class _Stopped(Exception):
    """A stop request arrived while waiting: leave without committing."""


class AnalyzerLoop:
    """Consumes ``crash-reported`` events until ``stop`` is set."""

    def __init__(self, cfg: LoopConfig, *, consumer: EventConsumer, producer: EventProducer,
                 processor: EventProcessor, store: CrashStore, metrics: AnalyzerMetrics):
        self.cfg = cfg
        self.consumer = consumer
        self.producer = producer
        self.processor = processor
        self.store = store
        self.metrics = metrics
        self.health = metrics.health
        # Records polled while waiting out an outage (a partition newly assigned meanwhile).
        self._pending: deque[Record] = deque()
        # Events polled and started, oldest first, with their first attempt (None: not
        # started in a thread; it runs when the event reaches the head).
        self._inflight: deque[tuple[Record, Future[Processed] | None]] = deque()
        self._finished: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._last_commit = 0.0
        # A rebalance hands the finished offsets of revoked partitions over on the consumer's
        # I/O thread (``_on_revoke``), while this loop waits in poll.
        self._lock = threading.Lock()
        self._running = False
        self.revoke_commits = 0  # commits made as partitions were revoked
        self.metrics.assignment.alarm_s = cfg.unassigned_alarm_s
        on_revoke = getattr(consumer, "on_revoke", None)
        if on_revoke is not None:
            on_revoke(self._on_revoke, self._revoke_committed)

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> int:
        """Handle events until ``stop`` (or, with ``idle_exit_s``, until nothing arrived for
        that long); returns how many events were handled."""
        handled = 0
        idle_since = time.monotonic()
        self._running = True
        pool = ThreadPoolExecutor(self.cfg.in_flight, thread_name_prefix="analyze") \
            if self.cfg.in_flight > 1 else None
        try:
            while not stop.is_set():
                self._fill(pool, stop)
                if not self._inflight:
                    self._commit_finished(stop, force=True)  # idle: nothing left owed
                    if idle_exit_s is not None and \
                            time.monotonic() - idle_since >= idle_exit_s:
                        break
                    continue
                record, first = self._inflight.popleft()
                if self._handle(record, stop, first):
                    handled += 1
                self._commit_finished(stop, force=False)
                idle_since = time.monotonic()
            self._commit_finished(stop, force=True)
        except _Stopped:
            pass  # what is not committed is redelivered after the restart
        finally:
            with self._lock:  # a close after a stop commits nothing more (see _on_revoke)
                self._running = False
                self._finished.clear()
            self._inflight.clear()
            self._pending.clear()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        return handled

    def _fill(self, pool: ThreadPoolExecutor | None, stop: threading.Event) -> None:
        """Poll until ``in_flight`` events are started (without waiting when some are)."""
        room = self.cfg.in_flight - len(self._inflight)
        if room <= 0:
            return
        if not self._pending:
            wait = 0.0 if self._inflight else self.cfg.poll_timeout_s
            self._pending.extend(self._poll(wait, stop, max_records=room))
        while self._pending and len(self._inflight) < self.cfg.in_flight:
            record = self._pending.popleft()
            fut = pool.submit(self._process, record) if pool is not None else None
            self._inflight.append((record, fut))

    def _process(self, record: Record) -> Processed:
        return self.processor.process(record.value, reanalysis=_reanalysis(record))

    def _poll(self, timeout_s: float, stop: threading.Event,
              max_records: int = 1) -> list[Record]:
        try:
            records = self.consumer.poll(timeout_s, max_records=max_records)
            lag = self.consumer.lag()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            self.health.down("event_log", str(exc))
            stop.wait(timeout_s)
            return []
        if lag is not None:
            self.metrics.lag.set(lag)
        group_state = getattr(self.consumer, "group_state", None)
        if group_state is not None:  # a consumer-group member (Kafka)
            self.metrics.assignment.seen(len(self.consumer.assignment()), group_state())
        return records

    def _handle(self, record: Record, stop: threading.Event,
                first: Future[Processed] | None = None) -> bool:
        """Process one record to its end (stored or dead-lettered) and mark it finished;
        False when its partition was taken away meanwhile (the new owner handles it).
        ``first``: its first attempt, already started in a thread."""
        attempt = 0
        while True:
            if record.tp not in self.consumer.assignment():
                log.info("event.revoked", topic=record.topic, partition=record.partition,
                         offset=record.offset)
                return False
            try:
                done = first.result() if first is not None else self._process(record)
            except RetryLater as exc:
                first = None
                self.metrics.events.labels(outcome="retried").inc()
                self.health.down(exc.dependency, str(exc))
                self._wait(backoff_s(attempt, initial_s=self.cfg.retry_backoff_s,
                                     max_s=self.cfg.retry_backoff_max_s), stop)
                attempt += 1
                continue
            except DeadLetter as exc:
                self._dead_letter(record, str(exc), attempt + 1, exc.event_id, stop)
                break
            self.health.all_up(_PROCESSING_DEPS)
            self._announce(done, stop)
            break
        with self._lock:
            self._finished[record.tp] = record.offset + 1
        return True

    def _on_revoke(self, revoked: set[TopicPartition], lost: bool) -> dict[TopicPartition, int]:
        """The finished offsets of ``revoked`` partitions, to be committed before they go
        (their announcements made durable first); nothing when the member was evicted
        (``lost``) or the loop is not running. Events of those partitions still in hand are
        abandoned: ``_handle`` drops them, uncommitted, and their new owner does them."""
        with self._lock:
            offsets = {tp: self._finished.pop(tp) for tp in revoked if tp in self._finished}
            if lost or not self._running or not offsets:
                return {}
        try:
            # Briefly: this runs on the consumer's I/O thread, and a flush that waits long
            # (Kafka slow or just back) stalls its heartbeats and the rebalance it is part of.
            # Announcements still unacknowledged then are not durable: their offsets are not
            # committed, and the new owner redoes those events (the store dedupes).
            self.producer.flush(timeout_s=self.cfg.revoke_flush_s)
        except Exception as exc:  # not durable, so not committed: the new owner redoes them
            self._revoke_committed(offsets, exc)
            return {}
        return offsets

    def _revoke_committed(self, offsets: Mapping[TopicPartition, int],
                          error: Exception | None) -> None:
        parts = {f"{tp.topic}/{tp.partition}": off for tp, off in offsets.items()}
        if error is None:
            self.revoke_commits += 1
            log.info("partitions.revoked_committed", offsets=parts)
        else:
            log.warning("partitions.revoked_uncommitted", offsets=parts, error=str(error)[:300])

    def _announce(self, done: Processed, stop: threading.Event) -> None:
        self.metrics.seconds.observe(done.seconds)
        self.metrics.events.labels(
            outcome="stored" if done.outcome.inserted else "duplicate").inc()
        # Announced on every delivery, duplicates included: a worker killed after storing
        # but before announcing must not leave the crash unannounced. Readers dedupe by
        # event id; the new_* flags are true only on the delivery that stored it.
        self._until_done("event_log", stop, lambda: self.producer.send(
            self.cfg.analyzed_topic, done.analyzed.to_bytes(),
            key=done.event.host.machine_id.encode() or None,
            headers=[("event-type", b"crash-analyzed")]))
        self.metrics.last_success.set(time.time())
        log.info("crash.stored", event_id=done.event.event_id,
                 signature=done.signature.text, cluster=done.outcome.cluster_id,
                 new_signature=done.outcome.new_signature,
                 duplicate=not done.outcome.inserted, seconds=round(done.seconds, 3),
                 bytes_fetched=done.bytes_fetched)

    def _dead_letter(self, record: Record, reason: str, attempts: int,
                     event_id: str | None, stop: threading.Event) -> None:
        key = failure_key(event_id, record.value)
        headers = [("error", reason.encode()[:4000]), ("attempts", str(attempts).encode()),
                   ("failure-key", key.encode()),
                   ("dead-lettered-at", str(int(time.time() * 1000)).encode()),
                   ("source-topic", record.topic.encode()),
                   ("source-partition", str(record.partition).encode()),
                   ("source-offset", str(record.offset).encode())]
        self._until_done("event_log", stop, lambda: self.producer.send(
            self.cfg.dead_letter_topic, record.value, key=record.key, headers=headers))
        self._until_done("store", stop, lambda: self.store.record_failure(
            key, reason, attempts, dead_lettered=True))
        self.metrics.events.labels(outcome="dead_lettered").inc()
        log.error("event.dead_lettered", reason=reason, attempts=attempts, failure_key=key,
                  topic=record.topic, partition=record.partition, offset=record.offset)

    def _commit_finished(self, stop: threading.Event, *, force: bool) -> None:
        """Commit the finished offsets (at most every ``commit_interval_s`` unless forced);
        announcements and dead letters are made durable first. Offsets of partitions no
        longer assigned are not committed here: a rebalance committed them as it revoked the
        partition (``_on_revoke``), or their new owner redoes them (the store dedupes)."""
        if not self._finished or (not force and time.monotonic() - self._last_commit
                                  < self.cfg.commit_interval_s):
            return
        self._until_done("event_log", stop,
                         lambda: self.producer.flush(timeout_s=self.cfg.flush_timeout_s))

        def commit() -> None:
            mine = self.consumer.assignment()
            with self._lock:
                offsets = {tp: off for tp, off in self._finished.items() if tp in mine}
            if offsets:
                self.consumer.commit(offsets)

        self._until_done("event_log", stop, commit)
        with self._lock:
            self._finished.clear()
        self._last_commit = time.monotonic()

    def _until_done(self, dependency: str, stop: threading.Event,
                    call: Callable[[], object]) -> None:
        """``call()`` again after a capped backoff while it fails retryably; raises
        :class:`_Stopped` when a stop arrives meanwhile."""
        attempt = 0
        while True:
            try:
                call()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                dep = "store" if isinstance(exc, StoreUnavailable) else dependency
                self.health.down(dep, str(exc))
                self._wait(backoff_s(attempt, initial_s=self.cfg.retry_backoff_s,
                                     max_s=self.cfg.retry_backoff_max_s), stop)
                attempt += 1
                continue
            self.health.up(dependency)
            return

    def _wait(self, delay_s: float, stop: threading.Event) -> None:
        """Wait ``delay_s`` with every assigned partition paused, polling all the while so
        the group keeps this member; records of partitions assigned meanwhile are kept for
        later. Raises :class:`_Stopped` on a stop request."""
        deadline = time.monotonic() + delay_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.consumer.pause(self.consumer.assignment())
                self._pending.extend(self.consumer.poll(min(left, self.cfg.poll_timeout_s),
                                                        max_records=1))
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                self.health.down("event_log", str(exc))
                stop.wait(min(left, self.cfg.poll_timeout_s))
        try:
            self.consumer.resume(self.consumer.assignment())
        except Exception as exc:
            if not is_retryable(exc):
                raise
        if stop.is_set():
            raise _Stopped
