"""The announcement of a shipped dump: its versioned ``crash-reported`` event (pure)."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from agent.facts import DumpFacts
from agent.journal import DumpRow
from foundation.text import name_text
from foundation.timefmt import iso_utc
from ingest.events import SCHEMA_VERSION, CrashReported, DumpRef, HostIdentity, crash_event_id

__all__ = ["DumpKeys", "crash_event"]


class DumpKeys(NamedTuple):
    """Where a shipped dump's objects are: the dump, its kernel log, its flat index."""

    dump_key: str | None
    dmesg_key: str | None
    index_key: str | None


def crash_event(row: DumpRow, sha: str, facts: DumpFacts, keys: DumpKeys, *,
                identity: HostIdentity, content: str, agent_version: str,
                now: float) -> CrashReported:
    """The event announcing ``row`` (content SHA-256 ``sha``); a spool's per-host directory
    stands for another machine (its name, escaped, is the host name). ``now`` in Unix
    seconds."""
    if row.host:
        host = name_text(row.host)
        machine_id = hashlib.sha256(host.encode()).hexdigest()[:32]
        identity = HostIdentity(hostname=host, machine_id=machine_id, boot_id="")
    return CrashReported(
        event_id=crash_event_id(sha), schema_version=SCHEMA_VERSION, host=identity,
        dump=DumpRef(sha256=sha, size=row.size, format=facts.format,  # type: ignore[arg-type]
                     content=content,  # type: ignore[arg-type]
                     key=keys.dump_key, dmesg_key=keys.dmesg_key, index_key=keys.index_key,
                     compression=facts.compression),
        layout=row.layout,  # type: ignore[arg-type]
        source_path=name_text(row.path), agent_version=agent_version,
        reported_at=iso_utc(now), kernel_release=facts.kernel_release,
        build_id=facts.build_id, crash_time=facts.crash_time or row.crash_time_hint,
    )
