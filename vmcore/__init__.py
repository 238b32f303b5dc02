"""vmcore: read a Linux kernel crash dump and build its report — the pure dump library.

It takes bytes through a small ranged-reader protocol (:class:`~vmcore.source.ByteSource`) and
a kernel's symbols through :class:`~vmcore.symbols.KernelSymbols`, and imports no service
dependency and no other crashfleet package (import-linter checks it). With symbols, deep
analysis reads the crashed task, its stack, the modules and findings from memory.

Public surface (imported lazily so ``crashfleet analyze`` starts fast):

- :func:`read_header` — format, compression, kernel release, build-id, crash time from the
  first blocks of a dump (a few KiB).
- :func:`analyze` — the kernel log, oopses and the versioned :class:`Report`.
- :func:`open_dump`, :func:`read_log`, :func:`format_dmesg`, :func:`parse_log`.
- Byte sources: :class:`LocalFileSource`, :class:`ObjectStoreSource`, :class:`BytesSource`.
- Flattened dumps: :class:`FlatIndexBuilder` (one pass over streamed chunks), :class:`FlatIndex`.
- Deep analysis: :mod:`vmcore.deep`; the symbol protocol: :mod:`vmcore.symbols`.
- Errors: :mod:`vmcore.errors` (each with ``retryable``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmcore.analyze import Analysis, DumpHeader, analyze, read_header
    from vmcore.formats import Dump, open_dump
    from vmcore.formats.flattened import FlatIndex, FlatIndexBuilder
    from vmcore.logread import read_log
    from vmcore.oops import parse_log
    from vmcore.printk import format_dmesg
    from vmcore.report import Report
    from vmcore.source import BytesSource, LocalFileSource, ObjectStoreSource

__all__ = [
    "Analysis",
    "BytesSource",
    "Dump",
    "DumpHeader",
    "FlatIndex",
    "FlatIndexBuilder",
    "LocalFileSource",
    "ObjectStoreSource",
    "Report",
    "analyze",
    "format_dmesg",
    "open_dump",
    "parse_log",
    "read_header",
    "read_log",
]

_WHERE = {
    "Analysis": "vmcore.analyze", "DumpHeader": "vmcore.analyze",
    "analyze": "vmcore.analyze", "read_header": "vmcore.analyze",
    "read_log": "vmcore.logread", "Dump": "vmcore.formats", "open_dump": "vmcore.formats",
    "FlatIndex": "vmcore.formats.flattened", "FlatIndexBuilder": "vmcore.formats.flattened",
    "parse_log": "vmcore.oops", "format_dmesg": "vmcore.printk", "Report": "vmcore.report",
    "BytesSource": "vmcore.source", "LocalFileSource": "vmcore.source",
    "ObjectStoreSource": "vmcore.source",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'vmcore' has no attribute {name!r}")
