"""Joining signatures into clusters: one cluster per bug.

A signature joins the cluster of an identical signature. A new signature joins an existing
cluster only when everything that makes the key — panic class, findings and taint — is the
same, and either

1. the first frame (where the bug is) is the same and the frame lists are alike (difflib
   ratio at least :data:`MIN_SIMILARITY`): kernel builds differ in what the compiler inlined
   and in the syscall path below, not in where the bug is; or
2. one of its alternative titles is one of the cluster's (``kernel BUG in foo``: the same kind
   of crash in the same function, whatever the file:line, the module bracket or the path that
   called it — syzbot's rule, one bug per title). Titles that name no function are not
   alternatives, so unrelated crashes with unresolved frames never join this way.

Over-grouping is the worse failure (Sentry), so anything less stays apart.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from signature import Signature

__all__ = ["MIN_SIMILARITY", "ClusterCandidate", "choose_cluster"]

MIN_SIMILARITY = 0.6


@dataclass(frozen=True)
class ClusterCandidate:
    """An existing cluster with the same class, findings and taint as the new signature;
    ``titles`` its alternative titles (empty: stored before titles, or none apply)."""

    id: str
    frames: tuple[str, ...]
    titles: tuple[str, ...] = ()


def choose_cluster(sig: Signature, candidates: Sequence[ClusterCandidate],
                   titles: Sequence[str] = ()) -> str | None:
    """The id of the cluster ``sig`` (with alternative ``titles``) belongs to, or None for a
    new cluster. Frame similarity first; the title rule only when no frames are alike."""
    best: tuple[float, str] | None = None
    by_title: tuple[float, str] | None = None
    wanted = set(titles)
    for c in candidates:
        ratio = difflib.SequenceMatcher(a=c.frames, b=sig.frames, autojunk=False).ratio()
        if c.frames and c.frames[0] == sig.frames[0] and ratio >= MIN_SIMILARITY:
            if best is None or ratio > best[0]:
                best = (ratio, c.id)
        elif wanted.intersection(c.titles) and (by_title is None or ratio > by_title[0]):
            by_title = (ratio, c.id)
    chosen = best or by_title
    return None if chosen is None else chosen[1]
