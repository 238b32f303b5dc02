"""The agent loop with the embedded adapters (local object store, SQLite event log): what
must hold whatever the backend."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.facts import DumpFacts, read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.metrics import AgentMetrics
from agent.service import Agent
from crashfleet.wiring.agent import agent_config
from foundation.settings import load_settings
from ingest.embedded_log import EmbeddedAdmin, EmbeddedConsumer, EmbeddedLog, EmbeddedProducer
from ingest.events import decode_crash_reported
from ingest.localstore import LocalObjectStore

TOPIC = "crash-reported"


def _agent(tmp_path: Path, spool: Path, facts: object) -> tuple[Agent, EmbeddedLog,
                                                                   LocalObjectStore]:
    settings = load_settings(None, env={})
    events = EmbeddedLog(tmp_path / "events.sqlite")
    EmbeddedAdmin(events).ensure_topics({TOPIC: 1})
    store = LocalObjectStore(tmp_path / "objects")
    cfg = dataclasses.replace(agent_config(settings), watch_dirs=(str(spool),), spool=True,
                              require_root_owner=False, stable_for_s=0.0, topic=TOPIC,
                              retry_initial_s=0.01, retry_max_s=0.02)
    agent = Agent(cfg, store=store, producer_factory=lambda: EmbeddedProducer(events),
                  journal=Journal(tmp_path / "journal.sqlite"), identity=host_identity(),
                  metrics=AgentMetrics(CollectorRegistry()), facts=facts)  # type: ignore[arg-type]
    return agent, events, store


def test_a_bug_on_one_dump_does_not_stop_the_others(tmp_path: Path) -> None:
    """An unexpected exception while shipping one dump leaves it in the journal for a retry;
    the other dumps ship and are announced, and the loop keeps running."""
    spool = tmp_path / "spool"
    (spool / "host-a").mkdir(parents=True)
    (spool / "host-b").mkdir(parents=True)
    poison = spool / "host-a" / "poison.dump"
    good = spool / "host-b" / "good.dump"
    poison.write_bytes(os.urandom(4096))
    good.write_bytes(os.urandom(8192))
    broken = {"yes": True}

    def facts(path: Path, with_log: bool) -> DumpFacts:
        if Path(os.path.realpath(path)).name == "poison.dump" and broken["yes"]:
            raise RuntimeError("a field nothing anticipated")
        return read_facts(path, with_log)

    agent, events, store = _agent(tmp_path, spool, facts)
    assert agent.run_once() is False  # one dump still waits
    counts = agent.journal.counts()
    assert counts["failed"] == 1
    keys = {o.key for o in store.list_objects("dumps/")}
    assert keys == {"dumps/" + hashlib.sha256(good.read_bytes()).hexdigest()}

    broken["yes"] = False  # the bug is fixed (or the condition passed): the retry ships it
    assert agent.run_once() is True
    consumer = EmbeddedConsumer(events, "check", [TOPIC], session_timeout_s=6.0)
    got = [decode_crash_reported(r.value) for r in consumer.poll(0.5)]
    consumer.close()
    assert sorted(ev.dump.sha256 for ev in got) == sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (poison, good))
