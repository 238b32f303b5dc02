"""The x86-64 ORC unwind tables of a pack (``.orc_unwind_ip``, ``.orc_unwind``, ``.orc_header``);
the section decoder and the lookup are :mod:`vmcore.orc`'s.

Entries are kept as the kernel's 6-byte ``struct orc_entry`` (``arch/x86/include/asm/
orc_types.h``): ``s16 sp_offset; s16 bp_offset;`` then a 16-bit word whose low byte holds
``sp_reg:4, bp_reg:4``. The meaning of the high byte changed: ``type:2, end:1`` before v6.4,
``type:3, signal:1`` since commit fb799447ae29 (v6.4); ``.orc_header`` (a hash of the layout)
exists since v6.5. The table records the header so a reader can tell layouts apart without
version numbers; :attr:`OrcEntry.flags` is the raw high byte.
"""

from __future__ import annotations

import struct
from array import array

from symbol_cache._lazy import Lazy, compress
from symbol_cache.errors import MalformedInput
from vmcore.errors import BadOrc
from vmcore.orc import OrcEntry, decode_orc_sections, orc_lookup

__all__ = ["OrcEntry", "OrcTable"]

_ENTRY = struct.Struct("<hhH")
_MAX_ENTRIES = 16_000_000


class OrcTable:
    """Sorted instruction pointers (u32 offsets from ``base``) with their 6-byte entries."""

    def __init__(self, base: int, ips: array | Lazy, entries: bytes | Lazy,
                 header: bytes | None, count: int | None = None):
        """``ips``/``entries`` may be :class:`Lazy` (from a pack); ``count`` is then required
        and the lengths are checked when they are first expanded."""
        self.base = base
        self.header = header
        self._ips_src = ips
        self._entries_src = entries if isinstance(entries, Lazy) else Lazy.of(entries)
        self._ips: array | None = ips if isinstance(ips, array) else None
        self._count = len(ips) if isinstance(ips, array) else (count or 0)
        if self._count > _MAX_ENTRIES:
            raise MalformedInput(f"ORC table of {self._count} entries is too large")
        if self._ips is not None:
            self._check()

    def _check(self) -> None:
        assert self._ips is not None
        n = len(self.entries)
        if len(self._ips) != self._count or n != self._count * _ENTRY.size:
            raise MalformedInput(f"ORC table: {len(self._ips)} ips but {n} entry bytes")

    @property
    def ips(self) -> array:
        """Instruction pointers as u32 offsets from ``base``, ascending."""
        if self._ips is None:
            assert isinstance(self._ips_src, Lazy)
            ips = array("I")
            raw = self._ips_src.get()
            if len(raw) % 4:
                raise MalformedInput("ORC ip section length is not a multiple of 4")
            ips.frombytes(raw)
            self._ips = ips
            self._check()
        return self._ips

    @property
    def entries(self) -> bytes:
        """The 6-byte entries, in ``ips`` order."""
        return self._entries_src.get()

    def packed(self) -> tuple[bytes, bytes]:
        """(compressed ips, compressed entries) for a pack."""
        ips = self._ips_src if isinstance(self._ips_src, Lazy) else None
        return (ips.packed() if ips is not None else compress(self.ips.tobytes()),
                self._entries_src.packed())

    def __len__(self) -> int:
        return self._count

    @classmethod
    def from_sections(cls, ip_section: bytes, ip_addr: int, unwind: bytes,
                      header: bytes | None) -> OrcTable:
        """Decode the kernel's sections (:func:`vmcore.orc.decode_orc_sections`)."""
        try:
            base, ips, entries = decode_orc_sections(ip_section, ip_addr, unwind)
        except BadOrc as exc:
            raise MalformedInput(exc.what) from exc
        return cls(base, ips, entries, header)

    def lookup(self, address: int) -> OrcEntry | None:
        """The ORC entry governing link-time ``address`` (None before the first ip)."""
        return orc_lookup(self.base, self.ips, self.entries, address)
