"""The kernel symbol table of a pack: sorted arrays, address → ``name+off/size`` lookups.

Sizes in lookups follow kallsyms (what ``%pS`` in a kernel log and ``crash`` print): a symbol
extends to the next higher symbol address, so ``kthread+0xda/0x100`` for a function whose ELF
size is 0xfe but whose successor starts 0x100 bytes later.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from symbol_cache._lazy import Lazy
from symbol_cache.errors import MalformedInput

__all__ = ["SLOT_SHIFT", "SymbolHit", "SymbolTable", "nm_kind"]

# Module packs: bits above this hold the section slot, below it the offset in the section.
SLOT_SHIFT = 40

_MAX_SYMBOLS = 4_000_000
_MAX_NAME = 4096
_MAX_NAME_HITS = 64  # occurrences of one name tried before giving up (malformed packs)

# ELF constants (elf.h)
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_SECTION, _STT_FILE = 0, 1, 2, 3, 4
_SHN_UNDEF, _SHN_LORESERVE, _SHN_ABS = 0, 0xFF00, 0xFFF1
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class SymbolHit:
    """A resolved address: ``offset`` and ``size`` in bytes, ``kind`` an ``nm`` letter."""

    name: str
    address: int
    offset: int
    size: int
    kind: str

    def __str__(self) -> str:
        return f"{self.name}+{self.offset:#x}/{self.size:#x}"


def nm_kind(info: int, shndx: int, sec_flags: int, nobits: bool) -> str:
    """The ``nm`` type letter of a defined symbol (T, t, D, d, B, b, R, r, W, w, V, v, A)."""
    bind, typ = info >> 4, info & 0xF
    if shndx == _SHN_ABS:
        letter = "a"
    elif sec_flags & _SHF_EXECINSTR:
        letter = "t"
    elif sec_flags & _SHF_WRITE:
        letter = "b" if nobits else "d"
    elif sec_flags & _SHF_ALLOC:
        letter = "r"
    else:
        letter = "n"
    if bind == _STB_WEAK:
        return ("V" if typ == _STT_OBJECT else "W")
    return letter.upper() if bind == _STB_GLOBAL else letter


def _rank(info: int, size: int) -> int:
    """Preference among aliases at one address (lower wins): sized functions, then other
    sized symbols, then unsized; within each, globals, then weak, then locals."""
    bind, typ = info >> 4, info & 0xF
    rank = 0 if (typ == _STT_FUNC and size) else 1 if size else 2
    rank = rank * 3 + (0 if bind == _STB_GLOBAL else 1 if bind == _STB_WEAK else 2)
    return rank


class SymbolTable:
    """Symbols sorted by address (aliases by preference). Arrays, so opening is a copy."""

    def __init__(self, addrs: array, name_offs: array, elf_sizes: array, kinds: bytes,
                 names: bytes | Lazy):
        n = len(addrs)
        if not (len(name_offs) == len(elf_sizes) == len(kinds) == n) or n > _MAX_SYMBOLS:
            raise MalformedInput(f"symbol table arrays disagree or exceed {_MAX_SYMBOLS}")
        self.addrs = addrs
        self.name_offs = name_offs
        self.elf_sizes = elf_sizes
        self.kinds = kinds
        self._names = names if isinstance(names, Lazy) else Lazy.of(names)

    def __len__(self) -> int:
        return len(self.addrs)

    @property
    def names(self) -> bytes:
        """NUL-terminated names (decompressed on first use when read from a pack)."""
        return self._names.get()

    @property
    def lazy_names(self) -> Lazy:
        return self._names

    @classmethod
    def from_elf(cls, raw: Iterable[tuple[int, int, int, int, int, int]], strtab: bytes,
                 sections: list[tuple[int, int, str, int, int]],
                 slot_of: dict[int, int] | None = None) -> SymbolTable:
        """Defined, allocated, non-absolute symbols of an ELF ``.symtab``.

        For a relocatable file (a module) ``slot_of`` maps section indexes to slots and each
        address becomes ``slot << SLOT_SHIFT | offset in the section``; symbols in sections
        without a slot are left out."""
        rows: list[tuple[int, int, str, int, str]] = []
        for name_off, info, _other, shndx, value, size in raw:
            typ = info & 0xF
            if typ in (_STT_SECTION, _STT_FILE) or shndx == _SHN_UNDEF or \
                    shndx >= _SHN_LORESERVE or shndx >= len(sections):
                continue
            flags, nobits, _sname, _saddr, _ssize = sections[shndx]
            if not flags & _SHF_ALLOC:
                continue
            end = strtab.find(b"\0", name_off, name_off + _MAX_NAME)
            if name_off >= len(strtab) or end < 0:
                raise MalformedInput("symbol name offset outside .strtab", offset=name_off)
            name = strtab[name_off:end].decode("utf-8", "replace")
            if not name or name[0] == "$":
                # arm64 mapping symbols ($x code, $d data) mark instruction sets, not
                # functions; kallsyms leaves them out, and so must sizes up to the next symbol
                continue
            if slot_of is not None:
                if shndx not in slot_of or value >= 1 << SLOT_SHIFT:
                    continue
                value |= slot_of[shndx] << SLOT_SHIFT
            kind = nm_kind(info, shndx, flags, bool(nobits))
            rows.append((value, _rank(info, size), name, size, kind))
            if len(rows) > _MAX_SYMBOLS:
                raise MalformedInput(f"more than {_MAX_SYMBOLS} symbols")
        rows.sort()
        addrs, name_offs, sizes = array("Q"), array("I"), array("I")
        kinds = bytearray()
        blob = bytearray()
        for value, _r, name, size, kind in rows:
            addrs.append(value)
            name_offs.append(len(blob))
            sizes.append(min(size, 0xFFFFFFFF))
            kinds += kind.encode()
            blob += name.encode() + b"\0"
        return cls(addrs, name_offs, sizes, bytes(kinds), bytes(blob))

    def name_at(self, i: int) -> str:
        names = self._names.get()
        start = self.name_offs[i]
        end = names.find(b"\0", start, start + _MAX_NAME)
        if end < 0:
            raise MalformedInput("symbol name not terminated", offset=start)
        return names[start:end].decode("utf-8", "replace")

    def lookup(self, address: int) -> SymbolHit | None:
        """The symbol containing link-time ``address``, or None outside every symbol."""
        addrs = self.addrs
        i = bisect.bisect_right(addrs, address) - 1
        if i < 0:
            return None
        start = addrs[i]
        first = bisect.bisect_left(addrs, start, 0, i + 1)  # preferred alias
        nxt = bisect.bisect_right(addrs, start, i)
        span = addrs[nxt] - start if nxt < len(addrs) else self.elf_sizes[first]
        if address - start >= max(span, 1):
            return None
        return SymbolHit(self.name_at(first), start, address - start, span,
                         chr(self.kinds[first]))

    def address_of(self, name: str) -> int | None:
        """Link-time address of symbol ``name`` (the lowest-indexed when names repeat), or None.

        The name is searched in the NUL-separated name blob and its symbol found by the name's
        offset: no index by name is built (a dict of 190,000 kernel names costs tens of MB
        and half a second, for the handful of names a caller asks for)."""
        key = name.encode()
        if not key or b"\0" in key:
            return None
        blob = self.names
        pos = 0 if blob.startswith(key + b"\0") else -1
        start = 0
        for _ in range(_MAX_NAME_HITS):
            if pos < 0:
                hit = blob.find(b"\0" + key + b"\0", start)
                if hit < 0:
                    return None
                pos = hit + 1
            offs = self.name_offs
            i = bisect.bisect_left(offs, pos)  # names are stored in symbol order
            if i < len(offs) and offs[i] == pos:
                return int(self.addrs[i])
            try:
                return int(self.addrs[offs.index(pos)])  # offsets out of order: a bad pack
            except ValueError:  # bytes that start no symbol's name (a malformed pack)
                start, pos = pos, -1
        return None
