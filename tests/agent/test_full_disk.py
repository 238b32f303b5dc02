"""The agent's state directory on a file system that fills up while it runs (a real tmpfs,
filled to its last byte): no traceback per pass, one line naming `agent.state_dir` while it
lasts, nothing shipped without being journaled, and everything shipped once space is back."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from agent.facts import read_facts
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


@contextlib.contextmanager
def _tmpfs(path: Path, size: int) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def test_a_full_state_disk_waits_with_one_line_and_ships_after(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "host-a").mkdir(parents=True)
    first, second = spool / "host-a" / "first.dump", spool / "host-a" / "second.dump"
    first.write_bytes(os.urandom(4096))
    events = EmbeddedLog(tmp_path / "events.sqlite")
    EmbeddedAdmin(events).ensure_topics({TOPIC: 1})
    store = LocalObjectStore(tmp_path / "objects")
    cfg = dataclasses.replace(agent_config(load_settings(None, env={})),
                              watch_dirs=(str(spool),), spool=True, require_root_owner=False,
                              stable_for_s=0.0, topic=TOPIC, retry_initial_s=0.01,
                              retry_max_s=0.02, rescan_interval_s=0.01)
    with _tmpfs(tmp_path / "state", 1 << 20) as state:
        metrics = AgentMetrics(CollectorRegistry())
        agent = Agent(cfg, store=store, producer_factory=lambda: EmbeddedProducer(events),
                      journal=Journal(state / "journal.sqlite"), identity=host_identity(),
                      metrics=metrics, facts=read_facts)
        assert agent.run_once() is True

        filler = _fill(state)
        second.write_bytes(os.urandom(8192))
        stop = threading.Event()
        structlog.reset_defaults()
        with structlog.testing.capture_logs() as logs:
            worker = threading.Thread(target=agent.run, args=(stop,))
            worker.start()
            try:
                # Several passes meet the full disk (a bound on a hung test, not a timing).
                for _ in range(400):
                    if metrics.failures.labels(stage="journal")._value.get() >= 3:
                        break
                    stop.wait(0.05)
            finally:
                stop.set()
                worker.join(30)
        assert not worker.is_alive()
        assert metrics.failures.labels(stage="journal")._value.get() >= 3
        assert not [e for e in logs if "exc_info" in e or e["log_level"] == "error"]
        warned = [e for e in logs if e["event"] == "journal.unwritable"
                  and e["log_level"] == "warning"]
        assert len(warned) == 1 and "agent.state_dir" in warned[0]["error"]
        # Nothing of the second dump was shipped without a journal row to show for it.
        assert {o.key for o in store.list_objects("dumps/")} == {
            "dumps/" + hashlib.sha256(first.read_bytes()).hexdigest()}

        filler.unlink()
        assert agent.run_once() is True
        agent.journal.close()
    consumer = EmbeddedConsumer(events, "check", [TOPIC], session_timeout_s=6.0)
    got = [decode_crash_reported(r.value) for r in consumer.poll(0.5)]
    consumer.close()
    assert sorted(ev.dump.sha256 for ev in got) == sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second))
