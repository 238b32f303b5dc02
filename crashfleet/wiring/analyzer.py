"""Wiring the analyzer service from settings (Kafka, S3, the store, /metrics) and rendering
the cluster table."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server

from analyzer.metrics import AnalyzerMetrics, StoreCollector
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from foundation.errors import ConfigError
from foundation.lifecycle import finish_within, stop_on_signals
from foundation.settings import Settings
from ingest.eventlog import EventConsumer, EventProducer
from ingest.objectstore import ObjectStore
from store import CrashStore, StoreUnavailable
from vmcore.analyze import PackProvider

__all__ = ["build_loop", "run_analyzer"]

log = structlog.get_logger("crashfleet.analyzer")
MIB = 1024 * 1024
_CLOSE_S = 2.0  # per Kafka client, on the way out


def build_loop(settings: Settings, *, consumer: EventConsumer, producer: EventProducer,
               objects: ObjectStore, store: CrashStore, metrics: AnalyzerMetrics,
               symbols: PackProvider | None = None) -> AnalyzerLoop:
    """An analyzer loop over the given adapters; ``symbols`` gives deep (memory) analysis."""
    a = settings.analyzer
    processor = EventProcessor(objects=objects, store=store, report_suffix=a.report_suffix,
                               block_cache_bytes=a.block_cache_mib * MIB, symbols=symbols)
    cfg = LoopConfig(analyzed_topic=settings.kafka.topic_crash_analyzed,
                     dead_letter_topic=settings.kafka.topic_dead_letter,
                     retry_backoff_s=a.retry_backoff_s,
                     retry_backoff_max_s=a.retry_backoff_max_s, in_flight=a.in_flight,
                     commit_interval_s=a.commit_interval_s)
    return AnalyzerLoop(cfg, consumer=consumer, producer=producer, processor=processor,
                        store=store, metrics=metrics)


def run_analyzer(settings: Settings, *, exit_when_idle: float | None = None,
                 reanalysis: bool = False) -> int:
    """One worker of the analyzer consumer group, with real Kafka, S3 and the store; with
    ``reanalysis``, of the group consuming re-analysis requests."""
    from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer, kafka_client_options
    from ingest.s3 import S3ObjectStore

    k = settings.kafka
    opts = kafka_client_options(k)
    admin = KafkaAdmin(**opts)
    admin.ensure_topics({k.topic_crash_reported: 6, k.topic_crash_analyzed: 6,
                         k.topic_dead_letter: 1, k.topic_reanalyze: 6})
    admin.close()
    from crashfleet.wiring.transport import store_url

    store = CrashStore(store_url(settings.store))
    try:
        store.migrate()
    except StoreUnavailable as exc:
        raise ConfigError(f"{exc} — start the database or fix store.url",
                          key="store.url") from exc
    registry = CollectorRegistry()
    metrics = AnalyzerMetrics(registry)
    registry.register(StoreCollector(store, settings.analyzer.top_clusters))
    if settings.analyzer.metrics_port:
        start_http_server(settings.analyzer.metrics_port, addr=settings.analyzer.metrics_addr,
                          registry=registry)
    group, topic = settings.analyzer.group_id, k.topic_crash_reported
    if reanalysis:
        group, topic = group + "-reanalysis", k.topic_reanalyze
    consumer = KafkaConsumer(**opts, group_id=group, topics=[topic],
                             session_timeout_s=settings.analyzer.session_timeout_s)
    producer = KafkaProducer(**opts)
    from crashfleet.wiring.symbols import open_cache, pack_provider

    loop = build_loop(settings, consumer=consumer, producer=producer,
                      objects=S3ObjectStore.from_settings(settings.s3), store=store,
                      metrics=metrics, symbols=pack_provider(open_cache(settings, registry)))
    stop = stop_on_signals("analyzer")
    if not reanalysis:
        _start_pruner(settings, store, stop)
    log.info("analyzer.start", group=group, topic=topic)
    try:
        handled = finish_within(lambda: loop.run(stop, idle_exit_s=exit_when_idle), stop,
                                component="analyzer")
    finally:
        # Bounded even with Kafka unreachable: SIGTERM must end the process within 10 s.
        # Nothing unfinished was committed; what is still unacknowledged is redone later.
        consumer.close(timeout_s=_CLOSE_S)
        producer.close(timeout_s=_CLOSE_S)
        store.dispose()
    log.info("analyzer.done", handled=handled)
    return 0


def _start_pruner(settings: Settings, store: CrashStore, stop: threading.Event) -> None:
    """Prune the store every ``store.prune_interval_s`` (jittered, so that analyzers started
    together spread out) while ``store.retain_days`` is set; a prune stops with the process
    between two batches, and the next one carries on."""
    s = settings.store
    if s.retain_days <= 0 or s.prune_interval_s <= 0:
        return
    from store.retention import prune

    remover: Any = None
    if s.prune_objects:
        from ingest.s3 import S3ObjectStore

        remover = S3ObjectStore.from_settings(settings.s3)

    def run() -> None:
        while not stop.wait(s.prune_interval_s * random.uniform(0.5, 1.0)):
            try:
                r = prune(store.engine, older_than=timedelta(days=s.retain_days),
                          remover=remover, batch=s.prune_batch, should_stop=stop.is_set)
            except Exception as exc:  # an outage or a bug: the next turn tries again
                log.warning("store.prune_failed", error=str(exc)[:300])
                continue
            if r.crashes:
                log.info("store.pruned", crashes=r.crashes, objects=r.objects,
                         batches=r.batches, complete=r.complete)

    threading.Thread(target=run, name="store-prune", daemon=True).start()
