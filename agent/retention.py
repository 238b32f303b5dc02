"""Which shipped dumps the retention policy deletes (the deleting is the agent's)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.journal import DumpRow

__all__ = ["doomed"]


def doomed(shipped: Sequence[DumpRow], policy: str, *, keep_newest: int,
           max_bytes: int) -> list[DumpRow]:
    """The announced dumps to delete: all with ``delete``; with ``limit``, those beyond the
    ``keep_newest`` newest or past ``max_bytes`` in total (0: no such limit), newest kept."""
    if policy == "keep":
        return []
    newest_first = sorted(shipped, key=lambda r: r.mtime_ns, reverse=True)
    if policy == "delete":
        return newest_first
    out: list[DumpRow] = []
    total = 0
    for i, r in enumerate(newest_first):
        total += r.size
        if (keep_newest and i >= keep_newest) or (max_bytes and total > max_bytes):
            out.append(r)
    return out
