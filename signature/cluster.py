"""Joining signatures into clusters: one cluster per bug.

A signature joins the cluster of an identical signature. A new signature joins an existing
cluster only when everything that makes the key — panic class, findings and taint — is the
same, the first frame (where the bug is) is the same, and the frame lists are alike
(difflib ratio at least :data:`MIN_SIMILARITY`): kernel builds differ in what the compiler
inlined and in the syscall path below, not in where the bug is. Over-grouping is the worse
failure (Sentry), so anything less stays apart.
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
    """An existing cluster with the same class, findings and taint as the new signature."""

    id: str
    frames: tuple[str, ...]


def choose_cluster(sig: Signature, candidates: Sequence[ClusterCandidate]) -> str | None:
    """The id of the cluster ``sig`` belongs to, or None for a new cluster."""
    best: tuple[float, str] | None = None
    for c in candidates:
        if not c.frames or c.frames[0] != sig.frames[0]:
            continue
        ratio = difflib.SequenceMatcher(a=c.frames, b=sig.frames, autojunk=False).ratio()
        if ratio >= MIN_SIMILARITY and (best is None or ratio > best[0]):
            best = (ratio, c.id)
    return None if best is None else best[1]
