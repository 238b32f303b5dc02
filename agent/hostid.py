"""The identity of the host the agent runs on; the filesystem root is a parameter for tests."""

from __future__ import annotations

import socket
from pathlib import Path

from ingest.events import HostIdentity

__all__ = ["host_identity"]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def host_identity(root: Path = Path("/"), hostname: str | None = None) -> HostIdentity:
    """Hostname, ``/etc/machine-id`` and the current boot id (empty strings when absent)."""
    return HostIdentity(
        hostname=hostname or socket.gethostname(),
        machine_id=_read(root / "etc" / "machine-id"),
        boot_id=_read(root / "proc" / "sys" / "kernel" / "random" / "boot_id"),
    )
