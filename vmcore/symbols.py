"""What deep analysis needs from a kernel's symbols, as protocols the library defines itself.

The symbol cache's packs (``symbol_cache.SymbolPack``) implement :class:`KernelSymbols`; so can
any other source (the dump's own kallsyms and BTF). The library never imports a provider: the
caller passes one in (``analyze(symbols=...)``).

Also here, because a build-id is a fact of the dump: :func:`normalize_build_id` and
:func:`is_plausible_build_id` (the garbage ``BUILD-ID`` some stable kernels print).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

__all__ = [
    "BadBuildId",
    "KernelSymbols",
    "SymbolHitLike",
    "is_plausible_build_id",
    "normalize_build_id",
]

# VMCOREINFO prints BUILD_ID_SIZE_MAX (20) bytes; GNU build-ids (SHA-1) are 20 bytes too, but
# other linkers' ids (md5, uuid, xxhash) are 8 to 32 bytes, so both bounds are accepted here.
_MIN_ID_BYTES = 8
_MAX_ID_BYTES = 64
_HEX = re.compile(r"[0-9a-f]+")


class BadBuildId(ValueError):
    """A text that is not a build-id (not hex bytes, or of an impossible length)."""


def normalize_build_id(text: str) -> str:
    """Lower-case hex of a build-id; raises :class:`BadBuildId` when it is not hex bytes."""
    value = text.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    if not _HEX.fullmatch(value) or len(value) % 2:
        raise BadBuildId(f"build-id {text!r} is not an even number of hex digits")
    if not _MIN_ID_BYTES * 2 <= len(value) <= _MAX_ID_BYTES * 2:
        raise BadBuildId(f"build-id {text!r} has {len(value) // 2} bytes, expected 8 to 64")
    return value


def is_plausible_build_id(text: str) -> bool:
    """False for values that cannot be a real build-id (the garbage-BUILD-ID kernels).

    A hash has high entropy: all-zero ids and ids with at most two distinct byte values are what
    the broken kernels print, never what a linker computes.
    """
    try:
        value = normalize_build_id(text)
    except BadBuildId:
        return False
    distinct = {value[i : i + 2] for i in range(0, len(value), 2)}
    return len(distinct) > 2


class SymbolHitLike(Protocol):
    """A resolved address: ``offset`` and ``size`` in bytes, ``kind`` an ``nm`` letter."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def kind(self) -> str: ...


class SymbolLookup(Protocol):
    """Link-time symbol table: name -> address and address -> symbol."""

    def address_of(self, name: str) -> int | None: ...
    def lookup(self, address: int) -> SymbolHitLike | None: ...


class MemberLike(Protocol):
    @property
    def size(self) -> int: ...


class StructLike(Protocol):
    """A struct layout: ``size`` in bytes and its members by name."""

    @property
    def size(self) -> int: ...
    @property
    def members(self) -> Mapping[str, MemberLike]: ...


class OrcRule(Protocol):
    """One ORC rule; offsets in bytes, registers as ORC_REG_* numbers."""

    @property
    def sp_offset(self) -> int: ...
    @property
    def bp_offset(self) -> int: ...
    @property
    def sp_reg(self) -> int: ...
    @property
    def bp_reg(self) -> int: ...
    @property
    def flags(self) -> int: ...


class OrcLookup(Protocol):
    """The kernel image's ORC table; ``header`` is set for the 6.x entry layout."""

    @property
    def header(self) -> bytes | None: ...
    def lookup(self, address: int) -> OrcRule | None: ...


class SourceLine(Protocol):
    """A source position: ``line`` 1-based, 0 when the compiler gave none."""

    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...


class KernelMeta(Protocol):
    @property
    def release(self) -> str | None: ...
    @property
    def banner(self) -> str | None: ...


class KernelSymbols(Protocol):
    """A kernel's symbols, struct layouts and unwind tables at link-time addresses."""

    @property
    def build_id(self) -> str: ...
    @property
    def meta(self) -> KernelMeta: ...
    @property
    def symbols(self) -> SymbolLookup: ...
    @property
    def types(self) -> Mapping[str, StructLike]: ...
    @property
    def orc(self) -> OrcLookup: ...
    def line_for(self, address: int) -> SourceLine | None: ...
    def member_offset(self, struct_name: str, path: str) -> int | None: ...
