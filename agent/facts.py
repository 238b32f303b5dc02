"""What the agent learns about a dump before shipping it, read through the decoder's
header reader (the agent has no dump parser of its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmcore.source import ByteSource

__all__ = ["DumpFacts", "FactsReader", "read_facts"]


@dataclass(frozen=True)
class DumpFacts:
    """Header facts of one dump; ``crash_time`` ISO 8601 UTC; ``kernel_log`` the log as
    dmesg prints it (log-only mode)."""

    format: str
    compression: str | None = None
    kernel_release: str | None = None
    build_id: str | None = None
    crash_time: str | None = None
    kernel_log: bytes | None = None


FactsReader = Callable[[str, bool], DumpFacts]  # (path, with_log)


_FORMATS = {"kdump": "kdump-compressed", "kdump-flattened": "flattened", "elf": "elf"}


def read_facts(path: str, with_log: bool = False) -> DumpFacts:
    """Header facts of the dump at ``path`` through the decoder's header reader (a few KiB);
    with ``with_log`` also its kernel log, formatted as dmesg (for log-only shipping). A file
    the decoder does not recognise is still shipped, as format ``unknown``: the analyzer
    dead-letters it with the reason, and the dump is kept."""
    from foundation.timefmt import iso_utc
    from vmcore.analyze import read_header
    from vmcore.errors import AnalyzerError
    from vmcore.source import LocalFileSource

    kernel_log = None
    try:
        with LocalFileSource(path) as src:
            hdr = read_header(src)
            if with_log:
                kernel_log = _kernel_log(src)
    except AnalyzerError:
        return DumpFacts(format="unknown")
    crash_time = None
    if hdr.crash_time:
        crash_time = iso_utc(hdr.crash_time)
    return DumpFacts(
        format=_FORMATS.get(hdr.format, "unknown"), compression=hdr.compression,
        kernel_release=hdr.kernel_release, build_id=hdr.build_id, crash_time=crash_time,
        kernel_log=kernel_log,
    )


def _kernel_log(src: ByteSource) -> bytes | None:
    from vmcore.errors import AnalyzerError
    from vmcore.formats import open_dump
    from vmcore.logread import read_log
    from vmcore.printk import format_dmesg

    try:
        _info, log = read_log(open_dump(src))
    except AnalyzerError:
        return None
    return format_dmesg(log.records)
