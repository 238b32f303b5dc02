"""Where vmlinux files come from: debuginfod servers, local directories, debug packages.

Every source implements :class:`Source`; the cache tries them in the configured order and
verifies whatever they return against the wanted build-id before using it.
"""

from symbol_cache.sources.base import Source, Wanted
from symbol_cache.sources.debimport import DebSource, extract_vmlinux
from symbol_cache.sources.debuginfod import DebuginfodSource, urls_from_env
from symbol_cache.sources.localdir import LocalDirSource

__all__ = [
    "DebSource",
    "DebuginfodSource",
    "LocalDirSource",
    "Source",
    "Wanted",
    "extract_vmlinux",
    "urls_from_env",
]
