"""Retention: which shipped dumps a policy removes from the host (a pure selection), and the
removal of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection

from agent.journal import DumpRow

__all__ = ["remove_dump", "select_for_removal"]


def select_for_removal(shipped: list[DumpRow], policy: str, *, keep_newest: int,
                       max_bytes: int) -> list[DumpRow]:
    """The shipped dumps a retention ``policy`` removes (pure): ``keep`` none, ``delete`` all;
    otherwise, newest written first, those past the ``keep_newest`` newest (0: no count
    limit) or past ``max_bytes`` in total (0: no size limit)."""
    if policy == "keep":
        return []
    newest_first = sorted(shipped, key=lambda r: r.mtime_ns, reverse=True)
    if policy == "delete":
        return newest_first
    doomed: list[DumpRow] = []
    total = 0
    for i, r in enumerate(newest_first):
        total += r.size
        if (keep_newest and i >= keep_newest) or (max_bytes and total > max_bytes):
            doomed.append(r)
    return doomed


def remove_dump(row: DumpRow, watch_dirs: Collection[str]) -> None:
    """Delete a shipped dump (and its kernel log) if the file is still the one shipped — same
    device, inode and size — and then its own directory when that is now empty."""
    try:
        st = os.stat(row.path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino, st.st_size) != (row.dev, row.ino, row.size):
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(row.path)
    if row.dmesg_path:
        with contextlib.suppress(OSError):
            os.unlink(row.dmesg_path)
    parent = os.path.dirname(row.path)
    if row.layout != "plain" and parent not in watch_dirs:
        with contextlib.suppress(OSError):
            os.rmdir(parent)  # only when empty
