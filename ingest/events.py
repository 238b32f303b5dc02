"""Versioned wire events between the agent and the analyzers.

``crash-reported`` (agent -> analyzers): a dump has been stored and can be analyzed. Its
``event_id`` is derived from the dump's SHA-256, so publishing it twice (an agent restart, a
retried send) names the same crash and the analyzers' idempotent store counts it once.

Compatibility: readers accept ``schema_version`` up to :data:`SCHEMA_VERSION`; new optional
fields may be added within a version; anything else bumps the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.schema import SchemaError, decode, encode

__all__ = [
    "SCHEMA_VERSION",
    "CrashAnalyzed",
    "CrashReported",
    "DumpRef",
    "HostIdentity",
    "crash_event_id",
    "decode_crash_reported",
]

SCHEMA_VERSION = 1

DumpFormat = Literal["kdump-compressed", "flattened", "elf", "unknown"]
Layout = Literal["debian-kdump-tools", "rhel-kdump", "plain", "spool"]
Content = Literal["full", "log-only"]


@dataclass(frozen=True)
class HostIdentity:
    """The host a dump came from: ``machine_id`` is /etc/machine-id, ``boot_id`` the boot the
    agent runs in (the crash happened in an earlier one)."""

    hostname: str
    machine_id: str
    boot_id: str


@dataclass(frozen=True)
class DumpRef:
    """Where the dump and its companions are stored, relative to the object store.

    ``size`` in bytes, ``sha256`` of the dump file's bytes. With ``content == "log-only"`` the
    memory image is not stored (``key`` is None) and only the kernel log travels.
    """

    sha256: str
    size: int
    format: DumpFormat
    content: Content
    key: str | None
    dmesg_key: str | None = None
    index_key: str | None = None  # flattened dumps: offset index built while uploading
    compression: str | None = None


@dataclass(frozen=True)
class CrashReported:
    """A dump was shipped. Times are ISO 8601 UTC strings."""

    event_id: str
    schema_version: int
    host: HostIdentity
    dump: DumpRef
    layout: Layout
    source_path: str
    agent_version: str
    reported_at: str
    kernel_release: str | None = None
    build_id: str | None = None
    crash_time: str | None = None
    type: Literal["crash-reported"] = "crash-reported"

    def to_bytes(self) -> bytes:
        return encode(self)


@dataclass(frozen=True)
class CrashAnalyzed:
    """A reported crash was analyzed and stored (analyzers -> anyone downstream).

    ``event_id`` is the crash-reported event's id; ``new_*`` say what the fleet had not seen
    before this crash (a new signature, cluster, taint letter or combination)."""

    event_id: str
    schema_version: int
    host: HostIdentity
    kernel_release: str | None
    signature_id: str
    signature: str
    cluster_id: str
    panic_class: str
    taint: str
    findings: tuple[str, ...]
    report_key: str | None
    analyzed_at: str
    partial: bool
    new_signature: bool
    new_cluster: bool
    new_taint_set: bool
    new_taint_letters: tuple[str, ...]
    type: Literal["crash-analyzed"] = "crash-analyzed"

    def to_bytes(self) -> bytes:
        return encode(self)


def crash_event_id(sha256: str) -> str:
    """The event id of a dump with this SHA-256 (hex)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a lower-case SHA-256 hex digest: {sha256!r}")
    return f"crash-{sha256[:40]}"


def decode_crash_reported(raw: bytes) -> CrashReported:
    """Parse and validate a ``crash-reported`` event; SchemaError when it is malformed or from
    a newer schema version than this reader knows."""
    event = decode(CrashReported, raw)
    if not 1 <= event.schema_version <= SCHEMA_VERSION:
        raise SchemaError(
            f"unsupported schema_version {event.schema_version} "
            f"(this reader knows 1..{SCHEMA_VERSION})",
            field="schema_version",
        )
    if event.event_id != crash_event_id(event.dump.sha256):
        raise SchemaError("does not match dump.sha256", field="event_id")
    return event
