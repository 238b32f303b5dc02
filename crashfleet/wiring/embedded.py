"""The embedded pipeline in one process: spool -> agent -> local object store -> embedded event
log -> analyzer -> SQLite -> /metrics. The same components as the fleet deployment, with the
single-machine adapters."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, start_http_server

from agent.facts import read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.metrics import AgentMetrics
from agent.service import Agent
from analyzer.metrics import AnalyzerMetrics, StoreCollector
from analyzer.service import AnalyzerLoop
from crashfleet.termviews import cluster_table
from crashfleet.wiring.agent import agent_config
from crashfleet.wiring.analyzer import build_loop
from foundation.lifecycle import stop_on_signals
from foundation.settings import Settings
from ingest.embedded_log import EmbeddedAdmin, EmbeddedConsumer, EmbeddedLog, EmbeddedProducer
from ingest.localstore import LocalObjectStore
from store import CrashStore

__all__ = ["run_embedded"]

log = structlog.get_logger("crashfleet.run")


def run_embedded(settings: Settings, *, spool: Path, data: Path, once: bool,
                 metrics_port: int, web_port: int = 0) -> int:
    """Run until SIGTERM (or, with ``once``, until everything in the spool is analyzed);
    with ``web_port``, the web UI is served beside /metrics on loopback."""
    spool.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    k = settings.kafka
    objects = LocalObjectStore(data / "objects")
    events = EmbeddedLog(data / "events.sqlite")
    EmbeddedAdmin(events).ensure_topics({k.topic_crash_reported: 2, k.topic_crash_analyzed: 2,
                                         k.topic_dead_letter: 1, k.topic_reanalyze: 1})
    store = CrashStore(f"sqlite:///{(data / 'crashfleet.sqlite').resolve()}")
    store.migrate()

    registry = CollectorRegistry()
    metrics = AnalyzerMetrics(registry)
    registry.register(StoreCollector(store, settings.analyzer.top_clusters))
    agent_metrics = AgentMetrics(registry)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
        print(f"metrics: http://127.0.0.1:{metrics_port}/metrics", flush=True)
    web = None
    if web_port and not once:
        from crashfleet.wiring.web import build_web_app, serve_in_thread

        web = serve_in_thread(build_web_app(settings, store=store, objects=objects),
                              "127.0.0.1", web_port)
        print(f"web: http://127.0.0.1:{web_port}/", flush=True)

    agent = _spool_agent(settings, spool, data, objects, events, agent_metrics, once)
    consumer = EmbeddedConsumer(events, settings.analyzer.group_id, [k.topic_crash_reported],
                                session_timeout_s=settings.analyzer.session_timeout_s)
    # Symbols for the deep analysis: packs live under the data directory on one machine.
    from crashfleet.wiring.symbols import open_cache, pack_provider

    sym_settings = dataclasses.replace(settings, symbols=dataclasses.replace(
        settings.symbols, cache_dir=str(data / "symbols"), shared="none"))
    loop = build_loop(settings, consumer=consumer, producer=EmbeddedProducer(events),
                      objects=objects, store=store, metrics=metrics,
                      symbols=pack_provider(open_cache(sym_settings, registry)))
    # Re-analysis requests (crashfleet reanalyze --data) in their own group, taken when the
    # new crashes are done.
    re_consumer = EmbeddedConsumer(events, settings.analyzer.group_id + "-reanalysis",
                                   [k.topic_reanalyze],
                                   session_timeout_s=settings.analyzer.session_timeout_s)
    reloop = build_loop(settings, consumer=re_consumer, producer=EmbeddedProducer(events),
                        objects=objects, store=store, metrics=metrics,
                        symbols=loop.processor.symbols)
    stop = stop_on_signals("run")
    try:
        if once:
            agent.run_once()
            loop.run(stop, idle_exit_s=1.0)
            reloop.run(stop, idle_exit_s=0.5)
            sys.stdout.write(cluster_table(store.clusters()))
            return 0
        return _run_until_stopped(agent, (loop, reloop), store, stop)
    finally:
        if web is not None:
            web.should_exit = True
        consumer.close()
        re_consumer.close()
        store.dispose()


def _spool_agent(settings: Settings, spool: Path, data: Path, objects: LocalObjectStore,
                 events: EmbeddedLog, metrics: AgentMetrics, once: bool) -> Agent:
    """The agent of an embedded run: the spool's files are the user's own, one directory per
    host; with ``once`` the spool is complete, so no waiting for sizes to settle."""
    stable = 0.0 if once else min(settings.agent.stable_for_s, 1.0)
    cfg = dataclasses.replace(agent_config(settings), watch_dirs=(str(spool),), spool=True,
                              require_root_owner=False, stable_for_s=stable,
                              owner_uid=os.geteuid())
    return Agent(cfg, store=objects, producer_factory=lambda: EmbeddedProducer(events),
                 journal=Journal(data / "agent-journal.sqlite"), identity=host_identity(),
                 metrics=metrics, facts=read_facts)


def _run_until_stopped(agent: Agent, loops: tuple[AnalyzerLoop, AnalyzerLoop],
                       store: CrashStore, stop: threading.Event) -> int:
    """The agent in a thread, the analyzer loops (new crashes, then re-analyses) in this one,
    the cluster table printed whenever new crashes were stored; 1 if the agent died."""
    agent_thread = threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True)
    agent_thread.start()
    loop, reloop = loops
    shown = -1
    while not stop.is_set():
        if not agent_thread.is_alive():  # never a silent dead agent: exit and say so
            log.error("agent.thread_died")
            return 1
        loop.run(stop, idle_exit_s=2.0)
        reloop.run(stop, idle_exit_s=0.2)
        total = store.counts()["crashes"]
        if total != shown:
            sys.stdout.write(cluster_table(store.clusters()))
            sys.stdout.flush()
            shown = total
    agent_thread.join(timeout=10)
    return 0
