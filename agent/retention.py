"""Retention: which shipped dumps a policy removes from the host, as a pure selection."""

from __future__ import annotations

from agent.journal import DumpRow

__all__ = ["select_for_removal"]


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
