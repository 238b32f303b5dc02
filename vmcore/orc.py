"""x86-64 ORC unwind tables: decoding the kernel's sections and looking an address up.

One decoder for the tables of a vmlinux (``symbol_cache`` stores them in packs) and of a
dump's memory (``__start_orc_unwind_ip``..``__stop_orc_unwind_ip``, ``__start_orc_unwind``).
Entries are the kernel's 6-byte ``struct orc_entry`` (``arch/x86/include/asm/orc_types.h``):
``s16 sp_offset; s16 bp_offset;`` then a 16-bit word whose low byte holds ``sp_reg:4,
bp_reg:4`` and whose high byte is kept raw in :attr:`OrcEntry.flags` (its meaning changed in
v6.4; ``.orc_header``, v6.5+, tells the layouts apart).
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from vmcore.errors import AnalyzerError, BadOrc
from vmcore.pages import PageReader, reraise_retryable

__all__ = ["MAX_ORC_ENTRIES", "MemoryOrc", "OrcEntry", "decode_orc_sections", "orc_lookup"]

ENTRY = struct.Struct("<hhH")
MAX_ORC_ENTRIES = 16_000_000


@dataclass(frozen=True)
class OrcEntry:
    """One ORC rule; offsets in bytes, registers as ORC_REG_* numbers."""

    ip: int
    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    flags: int


def decode_orc_sections(ip_section: bytes, ip_addr: int, unwind: bytes
                        ) -> tuple[int, array, bytes]:
    """(base, ips as ascending u32 offsets from base, entries in ips order) of the kernel's
    sections: each ``orc_unwind_ip`` value is a signed 32-bit offset from its own address
    ``ip_addr + 4 * i``. Raises :class:`BadOrc` when the sections disagree or span more
    than 4 GiB."""
    if len(ip_section) % 4 or len(unwind) != (len(ip_section) // 4) * ENTRY.size:
        raise BadOrc(
            f"ORC sections disagree: {len(ip_section)} ip bytes, {len(unwind)} entry bytes")
    if len(ip_section) // 4 > MAX_ORC_ENTRIES:
        raise BadOrc(f"ORC table of {len(ip_section) // 4} entries is too large")
    rel = array("i")
    rel.frombytes(ip_section)
    absolute = [ip_addr + 4 * i + r for i, r in enumerate(rel)]
    if not absolute:
        return 0, array("I"), b""
    base = min(absolute)
    if max(absolute) - base > 0xFFFFFFFF:
        raise BadOrc("ORC instruction pointers span more than 4 GiB")
    order = list(range(len(absolute)))
    if any(absolute[i] > absolute[i + 1] for i in range(len(absolute) - 1)):
        order.sort(key=absolute.__getitem__)  # the kernel's sorttable normally did this
    ips = array("I", (absolute[i] - base for i in order))
    if order == sorted(order):
        entries = bytes(unwind)
    else:
        entries = b"".join(unwind[i * 6 : i * 6 + 6] for i in order)
    return base, ips, entries


def orc_lookup(base: int, ips: array, entries: bytes, address: int) -> OrcEntry | None:
    """The entry governing ``address`` (None before the first ip or outside 4 GiB)."""
    rel = address - base
    if rel < 0 or rel > 0xFFFFFFFF:
        return None
    i = bisect.bisect_right(ips, rel) - 1
    if i < 0 or (i + 1) * ENTRY.size > len(entries):
        return None
    sp_off, bp_off, word = ENTRY.unpack_from(entries, i * ENTRY.size)
    return OrcEntry(ip=base + ips[i], sp_offset=sp_off, bp_offset=bp_off,
                    sp_reg=word & 0xF, bp_reg=(word >> 4) & 0xF, flags=word >> 8)


class MemoryOrc:
    """An ORC table read from memory, looked up in place: the kernel's sorttable sorted the
    ``orc_unwind_ip`` entries at build time, so a lookup is a binary search over the raw
    section (nothing is decoded up front). A hostile unsorted table yields wrong but bounded
    lookups, as in the kernel. ``header`` the ``.orc_header`` bytes (v6.5+) or None.
    Implements ``vmcore.symbols.OrcLookup``.

    Built from the sections' bytes, or with :meth:`in_memory` from where they lie in the
    dump (a lookup then reads the few pages its probes touch; unreadable ones give None)."""

    def __init__(self, ip_section: bytes, ip_addr: int, unwind: bytes, header: bytes | None):
        _check(len(ip_section), len(unwind))
        rel = array("i")
        rel.frombytes(ip_section)
        self._n = len(rel)
        self._rel: Callable[[int], int] = rel.__getitem__
        self._entry: Callable[[int], bytes] = lambda i: unwind[i * 6:i * 6 + 6]
        self._ip_addr = ip_addr
        self.header = header

    @classmethod
    def in_memory(cls, mem: PageReader, ip_addr: int, ip_len: int, unwind_addr: int,
                  unwind_len: int, header: bytes | None, slide: int = 0) -> MemoryOrc:
        """The table at link-time ``ip_addr`` (``ip_len`` bytes) and ``unwind_addr``, read
        through ``mem`` at those addresses plus ``slide`` (KASLR) as lookups need it."""
        _check(ip_len, unwind_len)
        self = cls.__new__(cls)
        self._n = ip_len // 4
        self._rel = lambda i: mem.s32(ip_addr + slide + 4 * i)
        self._entry = lambda i: mem.read(unwind_addr + slide + 6 * i, 6)
        self._ip_addr = ip_addr
        self.header = header
        return self

    def __len__(self) -> int:
        return self._n

    def _ip(self, i: int) -> int:
        return self._ip_addr + 4 * i + self._rel(i)

    def lookup(self, address: int) -> OrcEntry | None:
        try:
            i = bisect.bisect_right(range(self._n), address, key=self._ip) - 1
            if i < 0:
                return None
            sp_off, bp_off, word = ENTRY.unpack(self._entry(i))
            ip = self._ip(i)
        except AnalyzerError as exc:
            reraise_retryable(exc)
            return None
        return OrcEntry(ip=ip, sp_offset=sp_off, bp_offset=bp_off,
                        sp_reg=word & 0xF, bp_reg=(word >> 4) & 0xF, flags=word >> 8)


def _check(ip_len: int, unwind_len: int) -> None:
    if ip_len % 4 or unwind_len != (ip_len // 4) * ENTRY.size:
        raise BadOrc(f"ORC sections disagree: {ip_len} ip bytes, {unwind_len} entry bytes")
    if ip_len // 4 > MAX_ORC_ENTRIES:
        raise BadOrc(f"ORC table of {ip_len // 4} entries is too large")
