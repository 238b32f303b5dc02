"""What the agent learns about a dump before shipping it, read through the decoder's
header reader (the agent has no dump parser of its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DumpFacts", "FactsReader"]


@dataclass(frozen=True)
class DumpFacts:
    """Header facts of one dump; ``crash_time`` ISO 8601 UTC; ``index`` is the serialized
    offset index of a flattened dump; ``kernel_log`` the log text (log-only mode)."""

    format: str
    compression: str | None = None
    kernel_release: str | None = None
    build_id: str | None = None
    crash_time: str | None = None
    index: bytes | None = None
    kernel_log: bytes | None = None


FactsReader = Callable[[str], DumpFacts]
