"""Wiring the agent from settings: the real S3 store, Kafka producer, journal and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server

from agent.facts import read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.metrics import AgentMetrics
from agent.service import Agent, AgentConfig
from crashfleet import __version__
from foundation.errors import ConfigError
from foundation.lifecycle import finish_within, stop_on_signals
from foundation.settings import Settings
from ingest.eventlog import EventProducer
from ingest.objectstore import ObjectStore

__all__ = ["agent_config", "build_agent", "run_agent"]

log = structlog.get_logger("crashfleet.agent")

MIB = 1024 * 1024


def agent_config(settings: Settings) -> AgentConfig:
    """The loop's configuration from validated settings."""
    a = settings.agent
    return AgentConfig(
        watch_dirs=a.watch_dirs, content=a.content, dumps_prefix=a.dumps_prefix,
        part_size=a.part_size_mib * MIB, upload_concurrency=a.upload_concurrency,
        bandwidth_limit=a.bandwidth_limit_mibps * MIB, stable_for_s=a.stable_for_s,
        rescan_interval_s=a.rescan_interval_s, retry_initial_s=a.retry_initial_s,
        retry_max_s=a.retry_max_s, retention=a.retention,
        retention_keep_newest=a.retention_keep_newest,
        retention_max_bytes=a.retention_max_bytes, require_root_owner=a.require_root_owner,
        owner_uid=a.dump_owner_uid if a.require_root_owner else None,
        topic=settings.kafka.topic_crash_reported, agent_version=__version__,
        metrics_textfile=a.metrics_textfile,
    )


def build_agent(settings: Settings, *, store: ObjectStore | None = None,
                producer_factory: Any = None, registry: CollectorRegistry | None = None
                ) -> Agent:
    """An agent with real adapters (S3, Kafka) unless others are passed in."""
    if store is None:
        from ingest.s3 import S3ObjectStore

        store = S3ObjectStore.from_settings(settings.s3)
    if producer_factory is None:
        from ingest.kafka import KafkaProducer, kafka_client_options

        def producer_factory() -> EventProducer:
            return KafkaProducer(**kafka_client_options(settings.kafka))

    return Agent(
        agent_config(settings), store=store, producer_factory=producer_factory,
        journal=_open_journal(Path(settings.agent.state_dir)),
        identity=host_identity(), metrics=AgentMetrics(registry or CollectorRegistry()),
        facts=read_facts,
    )


def _open_journal(state_dir: Path) -> Journal:
    """The journal, or one line naming the setting and what to do (a full disk or an
    unwritable directory is met here first)."""
    import sqlite3

    try:
        return Journal(state_dir / "journal.sqlite")
    except (OSError, sqlite3.Error) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"agent.state_dir {str(state_dir)!r}: cannot open the agent's journal ({detail}); "
            "free space on that file system or make the directory writable by the agent",
            key="agent.state_dir") from exc


def run_agent(agent: Agent, settings: Settings, *, once: bool) -> int:
    """Run until SIGTERM/SIGINT (or one pass with ``once``); returns the exit code."""
    if settings.agent.metrics_port:
        start_http_server(settings.agent.metrics_port, addr=settings.agent.metrics_addr,
                          registry=agent.metrics.registry)
    log.info("agent.start", watch=list(settings.agent.watch_dirs), once=once,
             content=settings.agent.content)
    if once:
        ok = agent.run_once()
        counts = agent.journal.counts()
        log.info("agent.done", shipped_all=ok, **counts)
        return 0 if ok else 1
    stop = stop_on_signals("agent")
    finish_within(lambda: agent.run(stop), stop, component="agent")
    return 0
