"""Only regular files with one link, owned by the required owner, below a watched directory
whose every directory on the way is owned and not writable by others: checked on the opened
descriptor. Refusals never quote the file's contents."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.errors import DumpRefused
from agent.facts import read_facts
from agent.hostid import host_identity
from agent.journal import Journal
from agent.metrics import AgentMetrics
from agent.safeopen import open_below
from agent.service import Agent
from crashfleet.wiring.agent import agent_config
from foundation.settings import load_settings
from ingest.localstore import LocalObjectStore
from vmcore.errors import AnalyzerError
from vmcore.formats import detect
from vmcore.source import BytesSource

SHADOW = b"root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing an owner needs root")


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "crash"
    (root / "202611251203").mkdir(parents=True)
    dump = root / "202611251203" / "dump.202611251203"
    dump.write_bytes(b"KDUMP   " + bytes(4088))
    return root, dump


def _refusal(root: Path, path: Path, owner: int | None = None) -> str:
    with pytest.raises(DumpRefused) as info:
        fd = open_below(str(root), str(path), owner_uid=owner)
        os.close(fd)
    return info.value.reason


def test_a_plain_dump_opens(tmp_path: Path) -> None:
    root, dump = _tree(tmp_path)
    fd = open_below(str(root), str(dump), owner_uid=os.geteuid())
    assert os.fstat(fd).st_ino == dump.stat().st_ino
    os.close(fd)


def test_hard_link_is_refused(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    secret = tmp_path / "shadow"
    secret.write_bytes(SHADOW)
    os.link(secret, root / "vmcore")
    assert _refusal(root, root / "vmcore") == "hard link (2 links)"


def test_symlinks_on_the_way_are_refused(tmp_path: Path) -> None:
    root, dump = _tree(tmp_path)
    (root / "vmcore").symlink_to(dump)
    assert _refusal(root, root / "vmcore") == "symbolic link on the way"
    (root / "linked-dir").symlink_to(dump.parent)
    assert _refusal(root, root / "linked-dir" / dump.name) == "symbolic link on the way"


def test_fifo_and_paths_outside_are_refused(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    os.mkfifo(root / "vmcore")
    assert _refusal(root, root / "vmcore") == "not a regular file"  # and no hang on open
    assert _refusal(root, root / ".." / "x") == "outside the watched directory"


def test_mode_rules(tmp_path: Path) -> None:
    root, dump = _tree(tmp_path)
    dump.chmod(0o666)
    assert _refusal(root, dump) == "writable by others"
    dump.chmod(0o664)  # the group is trusted (user-private groups, umask 002)
    os.close(open_below(str(root), str(dump), owner_uid=None))
    dump.chmod(0o600)
    dump.parent.chmod(0o777)
    assert _refusal(root, dump) == "directory on the way writable by others and not sticky"
    dump.parent.chmod(0o1777)  # sticky, as /var/crash: others cannot swap root's entries
    os.close(open_below(str(root), str(dump), owner_uid=None))


@needs_root
def test_owner_rules(tmp_path: Path) -> None:
    root, dump = _tree(tmp_path)
    os.chown(dump, 65534, 65534)
    assert _refusal(root, dump, owner=0) == "owned by uid 65534, not 0"
    os.chown(dump, 0, 0)
    os.chown(dump.parent, 65534, 65534)
    assert _refusal(root, dump, owner=0) == "directory on the way owned by uid 65534, not 0"
    os.close(open_below(str(root), str(dump), owner_uid=None))


def _agent(tmp_path: Path, root: Path) -> tuple[Agent, LocalObjectStore]:
    settings = load_settings(None, env={})
    store = LocalObjectStore(tmp_path / "objects")
    cfg = dataclasses.replace(agent_config(settings), watch_dirs=(str(root),),
                              stable_for_s=0.0, owner_uid=os.geteuid())
    agent = Agent(cfg, store=store, producer_factory=lambda: None,  # type: ignore[arg-type,return-value]
                  journal=Journal(tmp_path / "journal.sqlite"), identity=host_identity(),
                  metrics=AgentMetrics(CollectorRegistry()), facts=read_facts)
    return agent, store


def test_the_agent_ships_no_hard_link_and_quotes_no_bytes(tmp_path: Path) -> None:
    """The defect: a hard link to /etc/shadow was shipped, and the dead-letter reason quoted
    its first bytes. Now it is refused by the agent, and the decoder's reason for a file that
    is not a dump names no byte of it."""
    root = tmp_path / "crash"
    root.mkdir()
    secret = tmp_path / "shadow"
    secret.write_bytes(SHADOW)
    os.link(secret, root / "vmcore")
    (root / "manual").mkdir()
    os.link(secret, root / "manual" / "vmcore")
    agent, store = _agent(tmp_path, root)
    agent.scan()
    agent.ship_due(ignore_backoff=True)
    assert list(store.list_objects("")) == []
    refused = agent.journal.by_state("refused")
    assert sorted(r.last_error or "" for r in refused) == ["hard link (3 links)"] * 2
    with pytest.raises(AnalyzerError) as info:
        detect(BytesSource(SHADOW))
    assert "root" not in str(info.value) and "unknown dump format" in str(info.value)


@needs_root
def test_a_top_level_file_of_another_owner_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    root.mkdir()
    (root / "vmcore").write_bytes(b"x" * 4096)
    os.chown(root / "vmcore", 65534, 65534)
    agent, _ = _agent(tmp_path, root)
    agent.scan()
    assert [r.last_error for r in agent.journal.by_state("refused")] == [
        "owned by uid 65534, not 0"]
