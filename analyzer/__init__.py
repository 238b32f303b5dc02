"""analyzer: decode Linux kernel crash dumps without debug symbols.

Public surface (imported lazily so ``crashfleet analyze`` starts fast):

- :func:`read_header` — format, compression, kernel release, build-id, crash time from the
  first blocks of a dump (a few KiB).
- :func:`analyze` — the kernel log, oopses and the versioned :class:`Report`.
- :func:`open_dump`, :func:`read_log`, :func:`format_dmesg`, :func:`parse_log`.
- Byte sources: :class:`LocalFileSource`, :class:`ObjectStoreSource`, :class:`BytesSource`.
- Flattened dumps: :class:`FlatIndexBuilder` (one pass over streamed chunks), :class:`FlatIndex`.
- Errors: :mod:`analyzer.errors`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.analyze import Analysis, DumpHeader, analyze, read_header
    from analyzer.formats import Dump, open_dump
    from analyzer.formats.flattened import FlatIndex, FlatIndexBuilder
    from analyzer.logread import read_log
    from analyzer.oops import parse_log
    from analyzer.printk import format_dmesg
    from analyzer.report import Report
    from analyzer.source import BytesSource, LocalFileSource, ObjectStoreSource

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
    "Analysis": "analyzer.analyze", "DumpHeader": "analyzer.analyze",
    "analyze": "analyzer.analyze", "read_header": "analyzer.analyze",
    "read_log": "analyzer.logread", "Dump": "analyzer.formats", "open_dump": "analyzer.formats",
    "FlatIndex": "analyzer.formats.flattened", "FlatIndexBuilder": "analyzer.formats.flattened",
    "parse_log": "analyzer.oops", "format_dmesg": "analyzer.printk", "Report": "analyzer.report",
    "BytesSource": "analyzer.source", "LocalFileSource": "analyzer.source",
    "ObjectStoreSource": "analyzer.source",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
