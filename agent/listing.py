"""Reading a crash directory within bounds that cannot hide a dump.

A host user can fill a world-writable crash directory with junk. Cutting the listing at a
number of entries in directory order (what readdir returns first) would let 15,000 junk files
hide a real dump for good. Here:

- only entries that could be a dump (the caller's ``wanted`` test, by name and type, never a
  ``stat``) are kept: junk costs one name comparison and no memory;
- when more wanted entries than ``max_entries`` exist, a cursor rotates through them in name
  order, scan after scan, so each is reached within a bounded number of scans;
- reading stops after ``max_listed`` names in all (a directory of millions of names must not
  make one scan unbounded).

Each skip is recorded in :attr:`Lister.skipped` for the caller's log line and metric.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_ENTRIES", "MAX_LISTED", "Lister", "Skipped"]

MAX_ENTRIES = 10_000  # wanted entries handed out per directory per scan
MAX_LISTED = 1_000_000  # names read per directory per scan


@dataclass(frozen=True)
class Skipped:
    """Entries of ``path`` left out of this scan: ``kind`` is ``junk`` (names that cannot be
    a dump), ``deferred`` (dump-shaped, beyond the bound: a later scan reaches them) or
    ``unread`` (past the listing bound)."""

    path: str
    kind: str
    count: int


class _Smallest:
    """The ``n`` smallest entries by name, in O(n) memory (a max-heap on the name)."""

    def __init__(self, n: int):
        self.n = n
        self._heap: list[tuple[_Reversed, os.DirEntry[str]]] = []

    def add(self, entry: os.DirEntry[str]) -> None:
        item = (_Reversed(entry.name), entry)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
        elif entry.name < self._heap[0][0].name:
            heapq.heapreplace(self._heap, item)

    def sorted(self) -> list[os.DirEntry[str]]:
        return sorted((e for _, e in self._heap), key=lambda e: e.name)


class _Reversed:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __lt__(self, other: _Reversed) -> bool:
        return self.name > other.name


class Lister:
    """Bounded directory reading with a rotating cursor per directory (one per agent)."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_listed: int = MAX_LISTED):
        self.max_entries = max_entries
        self.max_listed = max_listed
        self._cursor: dict[str, str] = {}  # directory -> last name handed out
        self.skipped: list[Skipped] = []

    def entries(self, path: str,
                wanted: Callable[[os.DirEntry[str]], bool]) -> list[os.DirEntry[str]]:
        """The wanted entries of ``path`` for this scan, in name order (from the cursor
        on, wrapping around, when there are more than the bound)."""
        cursor = self._cursor.get(path, "")
        after, before = _Smallest(self.max_entries), _Smallest(self.max_entries)
        wanted_n = junk = listed = 0
        with os.scandir(path) as it:
            for entry in it:
                listed += 1
                if listed > self.max_listed:
                    self.skipped.append(Skipped(path, "unread", 1 + sum(1 for _ in it)))
                    break
                if not wanted(entry):
                    junk += 1
                    continue
                wanted_n += 1
                (after if entry.name > cursor else before).add(entry)
        if junk:
            self.skipped.append(Skipped(path, "junk", junk))
        if wanted_n <= self.max_entries:
            self._cursor.pop(path, None)
            return sorted(after.sorted() + before.sorted(), key=lambda e: e.name)
        out = after.sorted()
        out += before.sorted()[: self.max_entries - len(out)]
        self._cursor[path] = out[-1].name
        self.skipped.append(Skipped(path, "deferred", wanted_n - len(out)))
        return out

    def take_skipped(self) -> list[Skipped]:
        """The skips recorded since the last call."""
        out, self.skipped = self.skipped, []
        return out
