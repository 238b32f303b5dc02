"""What the agent learns about a dump before shipping it, read through the decoder's
header reader (the agent has no dump parser of its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DumpFacts", "FactsReader", "read_facts"]


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


_FORMATS = {"kdump": "kdump-compressed", "kdump-flattened": "flattened", "elf": "elf"}


def read_facts(path: str) -> DumpFacts:
    """Header facts of the dump at ``path`` through the decoder; a file the decoder does not
    recognise is still shipped, as format ``unknown`` (the analyzer dead-letters it with the
    reason, and the dump is kept)."""
    from datetime import UTC, datetime

    from analyzer.errors import AnalyzerError
    from analyzer.formats import open_dump
    from analyzer.source import LocalFileSource
    from analyzer.vmcoreinfo import parse_vmcoreinfo

    try:
        with LocalFileSource(path) as src:
            dump = open_dump(src)
            info = parse_vmcoreinfo(dump.vmcoreinfo_blob) if dump.vmcoreinfo_blob else None
    except AnalyzerError:
        return DumpFacts(format="unknown")
    crash_time = None
    if info is not None and info.crash_time:
        crash_time = datetime.fromtimestamp(info.crash_time, UTC).isoformat().replace(
            "+00:00", "Z")
    return DumpFacts(
        format=_FORMATS.get(dump.format, "unknown"),
        compression=dump.compression,
        kernel_release=info.osrelease if info else None,
        build_id=info.build_id if info else None,
        crash_time=crash_time,
        index=dump.flat_index.to_bytes() if dump.flat_index is not None else None,
    )
