"""The agent works with write-only object store credentials (its S3 policy lets it put under
its prefix and read nothing): a HEAD answered 403 means "cannot know", and the dump is
uploaded (the same bytes under the same content-addressed key)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.facts import read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.metrics import AgentMetrics
from agent.service import Agent
from crashfleet.wiring.agent import agent_config
from foundation.settings import load_settings
from ingest.embedded_log import EmbeddedAdmin, EmbeddedLog, EmbeddedProducer
from ingest.errors import AccessDenied
from ingest.localstore import LocalObjectStore
from ingest.objectstore import ObjectInfo


class WriteOnlyStore(LocalObjectStore):
    """The local store as a write-only principal sees S3 (a stand-in: SeaweedFS without an
    identity file accepts every request, so the real policy cannot be exercised locally)."""

    def head(self, key: str) -> ObjectInfo | None:
        raise AccessDenied(key)


def test_write_only_credentials_still_ship(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    dump = spool / "a.dump"
    dump.write_bytes(os.urandom(8192))
    events = EmbeddedLog(tmp_path / "events.sqlite")
    EmbeddedAdmin(events).ensure_topics({"crash-reported": 1})
    store = WriteOnlyStore(tmp_path / "objects")
    cfg = dataclasses.replace(agent_config(load_settings(None, env={})), watch_dirs=(str(spool),),
                              spool=True, stable_for_s=0.0, owner_uid=os.geteuid())
    agent = Agent(cfg, store=store, producer_factory=lambda: EmbeddedProducer(events),
                  journal=Journal(tmp_path / "j.sqlite"), identity=host_identity(),
                  metrics=AgentMetrics(CollectorRegistry()), facts=read_facts)
    assert agent.run_once() is True
    keys = [o.key for o in LocalObjectStore(tmp_path / "objects").list_objects("dumps/")]
    assert keys == ["dumps/" + hashlib.sha256(dump.read_bytes()).hexdigest()]
