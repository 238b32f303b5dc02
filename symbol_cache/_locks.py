"""Two small facts the cache's parts share: a process-exclusive file lock and the expiry
(Unix seconds) an object's metadata carries (leases, recorded failures)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["exclusive_lock", "expires_at"]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent) for the ``with`` body."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def expires_at(metadata: Mapping[str, str]) -> float:
    """The ``expires`` metadata value in Unix seconds; 0 (long expired) when absent or not a
    number, so a garbled object never blocks anyone."""
    try:
        return float(metadata.get("expires", "0"))
    except ValueError:
        return 0.0
