"""The directory listing bound cannot hide a dump: junk never takes a dump's room, and more
dump-shaped entries than the bound are reached by a rotating cursor; skips are reported."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.discovery import scan, scan_spool
from agent.facts import read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.listing import Lister, Skipped
from agent.metrics import AgentMetrics
from agent.service import Agent
from crashfleet.wiring.agent import agent_config
from foundation.settings import load_settings
from ingest.localstore import LocalObjectStore


def _junk(d: Path, n: int, name: str = "junk-{:05}.core") -> None:
    for i in range(n):
        (d / name.format(i)).write_bytes(b"")


class _DumpLast:
    """``os.scandir`` with the directory order a filesystem may well have: the dump after
    the junk (the order is the filesystem's; this makes the worst case certain)."""

    def __init__(self, path: str):
        with _real_scandir(path) as it:
            self._entries = sorted(it, key=lambda e: e.name == "vmcore")

    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self._entries)

    def __exit__(self, *exc: object) -> None:
        pass


_real_scandir = os.scandir


def test_fifteen_thousand_junk_files_do_not_hide_a_dump(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect: the listing was cut at 10,000 entries in directory order, so a dump met
    after 15,000 junk files stayed invisible for good, and nothing said so."""
    monkeypatch.setattr(os, "scandir", _DumpLast)
    _junk(tmp_path, 15_000)
    (tmp_path / "vmcore").write_bytes(b"d")
    lister = Lister()
    found, _ = scan(tmp_path, require_root_owner=False, lister=lister)
    assert [os.path.basename(c.path) for c in found] == ["vmcore"]
    assert lister.take_skipped() == [Skipped(str(tmp_path), "junk", 15_000)]


def test_more_dumps_than_the_bound_are_reached_in_turn(tmp_path: Path) -> None:
    for i in range(25):
        (tmp_path / f"h{i:02}").mkdir()
        (tmp_path / f"h{i:02}" / "x.dump").write_bytes(b"d")
    lister = Lister(max_entries=10)
    seen: set[str] = set()
    kinds = []
    for _ in range(3):
        found, _ = scan_spool(tmp_path, lister=lister)
        seen |= {c.host or "" for c in found}
        kinds += [s.kind for s in lister.take_skipped() if s.path == str(tmp_path)]
    assert seen == {f"h{i:02}" for i in range(25)}
    assert kinds == ["deferred"] * 3


def test_the_listing_bound_is_reported(tmp_path: Path) -> None:
    _junk(tmp_path, 30, "{:03}.dump")
    lister = Lister(max_listed=20, max_entries=100)
    found, _ = scan_spool(tmp_path, lister=lister)
    assert len(found) == 20
    assert lister.take_skipped() == [Skipped(str(tmp_path), "unread", 10)]


def test_the_agent_logs_and_counts_skips(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    root.mkdir()
    _junk(root, 12_000)
    (root / "vmcore").write_bytes(b"d" * 4096)
    registry = CollectorRegistry()
    settings = load_settings(None, env={})
    cfg = dataclasses.replace(agent_config(settings), watch_dirs=(str(root),),
                              stable_for_s=0.0, owner_uid=os.geteuid())
    agent = Agent(cfg, store=LocalObjectStore(tmp_path / "o"),
                  producer_factory=lambda: None,  # type: ignore[arg-type,return-value]
                  journal=Journal(tmp_path / "j.sqlite"), identity=host_identity(),
                  metrics=AgentMetrics(registry), facts=read_facts)
    assert agent.scan() == 1
    assert registry.get_sample_value("crashfleet_agent_listing_skipped_total",
                                     {"kind": "junk"}) == 12_000
