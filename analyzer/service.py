"""The analyzer's consumer loop: one event at a time (bounded memory), retries for transient
failures, the dead-letter topic for permanent ones, offsets committed only after the store.

At-least-once end to end: a worker killed between storing and committing sees the event again
(in itself or another member of the group), and the store's unique event id turns the
redelivery into a no-op.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog

from analyzer.metrics import AnalyzerMetrics
from analyzer.worker import DeadLetter, EventProcessor, RetryLater
from ingest.errors import RetryableIngestError
from ingest.eventlog import EventConsumer, EventProducer, Record, TopicPartition
from store import CrashStore

__all__ = ["AnalyzerLoop", "LoopConfig"]

log = structlog.get_logger("crashfleet.analyzer")


@dataclass(frozen=True)
class LoopConfig:
    analyzed_topic: str
    dead_letter_topic: str
    max_attempts: int = 3
    retry_backoff_s: float = 2.0
    poll_timeout_s: float = 1.0


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

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> int:
        """Handle events until ``stop`` (or, with ``idle_exit_s``, until nothing arrived for
        that long); returns how many events were handled."""
        handled = 0
        idle_since = time.monotonic()
        while not stop.is_set():
            records = self.consumer.poll(self.cfg.poll_timeout_s, max_records=1)
            lag = self.consumer.lag()
            if lag is not None:
                self.metrics.lag.set(lag)
            if not records:
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                continue
            for record in records:
                if not self._handle(record, stop):
                    return handled  # stopped while retrying: not committed, redelivered later
                handled += 1
                idle_since = time.monotonic()
        return handled

    def _handle(self, record: Record, stop: threading.Event) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                done = self.processor.process(record.value)
            except RetryLater as exc:
                self.metrics.events.labels(outcome="retried").inc()
                if attempt >= self.cfg.max_attempts:
                    self._dead_letter(record, f"gave up after {attempt} attempts: {exc}",
                                      attempt, None)
                    break
                delay = self.cfg.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("event.retry", error=str(exc), attempt=attempt, retry_in_s=delay)
                if stop.wait(delay):
                    return False
                continue
            except DeadLetter as exc:
                self._dead_letter(record, str(exc), attempt, exc.event_id)
                break
            self.metrics.seconds.observe(done.seconds)
            self.metrics.events.labels(
                outcome="stored" if done.outcome.inserted else "duplicate").inc()
            # Announced on every delivery, duplicates included: a worker killed after storing
            # but before announcing must not leave the crash unannounced. Readers dedupe by
            # event id; the new_* flags are true only on the delivery that stored it.
            self.producer.send(self.cfg.analyzed_topic, done.analyzed.to_bytes(),
                               key=done.event.host.machine_id.encode() or None,
                               headers=[("event-type", b"crash-analyzed")])
            self.metrics.last_success.set(time.time())
            log.info("crash.stored", event_id=done.event.event_id,
                     signature=done.signature.text, cluster=done.outcome.cluster_id,
                     new_signature=done.outcome.new_signature,
                     duplicate=not done.outcome.inserted, seconds=round(done.seconds, 3),
                     bytes_fetched=done.bytes_fetched)
            break
        self._flush_and_commit(record)
        return True

    def _dead_letter(self, record: Record, reason: str, attempts: int,
                     event_id: str | None) -> None:
        self.metrics.events.labels(outcome="dead_lettered").inc()
        headers = [("error", reason.encode()[:4000]), ("attempts", str(attempts).encode()),
                   ("source-topic", record.topic.encode()),
                   ("source-partition", str(record.partition).encode()),
                   ("source-offset", str(record.offset).encode())]
        self.producer.send(self.cfg.dead_letter_topic, record.value, key=record.key,
                           headers=headers)
        key = event_id or f"{record.topic}/{record.partition}/{record.offset}"
        self.store.record_failure(key, reason, attempts, dead_lettered=True)
        log.error("event.dead_lettered", reason=reason, attempts=attempts,
                  topic=record.topic, partition=record.partition, offset=record.offset)

    def _flush_and_commit(self, record: Record) -> None:
        # The announcement and dead letters must be durable before the offset moves on.
        while True:
            try:
                self.producer.flush()
                break
            except RetryableIngestError as exc:
                log.warning("producer.retry", error=str(exc))
                time.sleep(1.0)
        self.consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
