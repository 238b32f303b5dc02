"""File and directory names are bytes: whatever name the kernel allows under a watched tree,
the agent handles it without an exception, and one bad entry never stops the other dumps."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
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


def _agent(tmp_path: Path, spool: Path, facts: object = read_facts, *,
           registry: CollectorRegistry | None = None) -> tuple[Agent, EmbeddedLog,
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
                  metrics=AgentMetrics(registry or CollectorRegistry()),
                  facts=facts)  # type: ignore[arg-type]
    return agent, events, store


def _announced(events: EmbeddedLog) -> list[str]:
    consumer = EmbeddedConsumer(events, "check", [TOPIC], session_timeout_s=6.0)
    got = [decode_crash_reported(r.value) for r in consumer.poll(0.5)]
    consumer.close()
    return sorted(ev.dump.sha256 for ev in got)


def test_an_invalid_utf8_file_name_ships_and_the_others_too(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "host-a").mkdir(parents=True)
    bad = os.path.join(os.fsencode(spool / "host-a"), b"bad-\xff.dump")
    with open(bad, "wb") as f:
        f.write(os.urandom(4096))
    good = spool / "host-a" / "good.dump"
    good.write_bytes(os.urandom(8192))
    agent, events, _ = _agent(tmp_path, spool)
    assert agent.run_once() is True
    with open(bad, "rb") as f:
        bad_sha = hashlib.sha256(f.read()).hexdigest()
    assert _announced(events) == sorted([bad_sha, hashlib.sha256(good.read_bytes()).hexdigest()])
    # The journal keeps the name's exact bytes: a restart finds the same row.
    rows = agent.journal.by_state("announced")
    assert sorted(os.fsencode(r.path) for r in rows) == sorted([bad, os.fsencode(good)])
    agent.journal.close()
    again, _, _ = _agent(tmp_path, spool)
    assert again.scan() == 0


def test_an_invalid_utf8_host_directory_is_refused_once(tmp_path: Path) -> None:
    """A host directory name is shipped as the host's name: bytes that are not UTF-8 are no
    host name. The directory is refused with one log line and a metric; the rest ships."""
    spool = tmp_path / "spool"
    spool.mkdir()
    bad_dir = os.path.join(os.fsencode(spool), b"host-\xfe")
    os.mkdir(bad_dir)
    with open(os.path.join(bad_dir, b"x.dump"), "wb") as f:
        f.write(os.urandom(4096))
    good = spool / "good.dump"
    good.write_bytes(os.urandom(4096))
    registry = CollectorRegistry()
    agent, events, _ = _agent(tmp_path, spool, registry=registry)
    assert agent.run_once() is True
    assert _announced(events) == [hashlib.sha256(good.read_bytes()).hexdigest()]
    assert registry.get_sample_value("crashfleet_agent_refused_total") == 1
    assert agent.run_once() is True
    assert registry.get_sample_value("crashfleet_agent_refused_total") == 1


def test_a_failure_on_one_entry_during_the_scan_does_not_stop_the_others(
        tmp_path: Path, monkeypatch: object) -> None:
    """Every step of detection that can fail is injected into one entry: the other dumps
    are still detected and shipped, and the scan itself never raises."""
    import agent.service as service

    spool = tmp_path / "spool"
    spool.mkdir()
    poison = spool / "poison.dump"
    poison.write_bytes(os.urandom(4096))
    good = spool / "good.dump"
    good.write_bytes(os.urandom(4096))
    real_writing = service.is_open_for_writing

    for step in ("open", "writers", "journal"):
        agent, events, _ = _agent(tmp_path / step, spool)

        def broken(fd: int, path: str, _step: str = step) -> bool:
            if _step == "writers" and path.endswith("poison.dump"):
                raise RuntimeError("injected")
            return real_writing(fd, path)

        monkeypatch.setattr(service, "is_open_for_writing", broken)  # type: ignore[attr-defined]
        real_add = agent.journal.add

        def add(path: str, *args: object, _step: str = step, _add: object = real_add,
                **kw: object) -> object:
            if _step == "journal" and path.endswith("poison.dump"):
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "injected")
            return _add(path, *args, **kw)  # type: ignore[operator]

        agent.journal.add = add  # type: ignore[method-assign]
        real_open = os.open

        def fake_open(path: object, *args: object, _step: str = step,
                      _open: object = real_open, **kw: object) -> int:
            if _step == "open" and str(path).endswith("poison.dump"):
                raise PermissionError(13, "injected")
            return _open(path, *args, **kw)  # type: ignore[operator, no-any-return]

        monkeypatch.setattr(service.os, "open", fake_open)  # type: ignore[attr-defined]
        agent.scan()
        agent.ship_due(ignore_backoff=True)
        agent.publish(ignore_backoff=True)
        monkeypatch.undo()  # type: ignore[attr-defined]
        assert _announced(events) == [hashlib.sha256(good.read_bytes()).hexdigest()], step


def test_the_loop_survives_an_unexpected_error(tmp_path: Path) -> None:
    """A bug met anywhere in one pass is logged and the loop goes on: the thread of
    ``crashfleet run`` never dies silently."""
    spool = tmp_path / "spool"
    spool.mkdir()
    agent, _, _ = _agent(tmp_path, spool)
    calls = {"n": 0}
    real_scan = agent.scan

    def scan() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected")
        stop.set()
        return real_scan()

    agent.scan = scan  # type: ignore[method-assign]
    agent.cfg = dataclasses.replace(agent.cfg, rescan_interval_s=0.0)
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    t.join(timeout=30)
    assert not t.is_alive() and calls["n"] == 2


def test_facts_failure_on_one_dump_with_a_hostile_name(tmp_path: Path) -> None:
    """The hostile name and a failing reader on the same entry: still one retry, no crash."""
    spool = tmp_path / "spool"
    spool.mkdir()
    bad = os.path.join(os.fsencode(spool), b"\x1b]0;pwned\x07\xff.dump")
    with open(bad, "wb") as f:
        f.write(os.urandom(4096))

    def facts(path: str, with_log: bool) -> DumpFacts:
        raise RuntimeError("injected")

    agent, _, _ = _agent(tmp_path, spool, facts)
    assert agent.run_once() is False
    assert agent.journal.counts()["failed"] == 1
