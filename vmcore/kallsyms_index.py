"""kallsyms looked up where it lies in the dump, as the kernel's own ``kallsyms_lookup_name``
and ``kallsyms_lookup`` do, instead of decoding every name (150,000 of them on a Debian 6.x
kernel) up front.

Beside the tables VMCOREINFO exports, ``scripts/kallsyms.c`` writes ``kallsyms_markers`` (the
byte offset in ``kallsyms_names`` of every 256th name) and, since v6.2 (commit 60443c88f3a8,
backported to Debian's 6.1), ``kallsyms_seqs_of_names`` (symbol indices sorted by name, three
big-endian bytes each). They are not exported, but their place is fixed: each table is aligned
to 8 bytes, in the order names, markers, seqs_of_names, token_table (v6.2, Debian's 6.1) or
names, markers, token_table, token_index, offsets, relative_base, seqs_of_names (6.12
checked). That place is checked before it is used
(the markers start at 0 and grow, and the last block of names, walked from the last marker,
ends right before the markers); when it does not hold, :func:`open_indexed` returns None and
the caller decodes every name (:mod:`vmcore.kallsyms`).

A name is then found by binary search over ``seqs_of_names`` (each probe expands one name:
marker, at most 255 names skipped, its tokens), and an address by binary search over
``kallsyms_offsets`` (sorted by address at build time). Each probe is bounded; a lying table
gives wrong or missing answers, never unbounded work. Unreadable memory during a lookup is "not
found" (a retryable source failure is re-raised).
"""

from __future__ import annotations

import bisect
import re
from array import array
from itertools import pairwise

from vmcore.errors import AnalyzerError, BadKallsyms
from vmcore.pages import PageReader, reraise_retryable

__all__ = ["IndexedKallsyms", "alias_rank", "open_indexed"]

_NAME_MAX = 1024
_MAX_ALIASES = 64
_START_KERNEL_MAP = 0xFFFFFFFF80000000
_MASK = 2**64 - 1
_ALIAS_RANK = {"T": 0, "t": 1, "W": 2, "w": 3}
# Section boundaries the linker script defines beside the first or last function of a section
# (``_stext``, ``__irqentry_text_start``): the kernel's own ``may_be_linker_script_provide_
# symbol`` names (scripts/kallsyms.c) and the ``_s``/``_e`` text bounds.
_MARKER = re.compile(r"__(?:start|stop|end)_\w+|__\w+_(?:start|end)|_[se]?(?:init)?text")


def alias_rank(kind: str, name: str) -> tuple[bool, int]:
    """Preference among symbols at one address (lower wins): functions before section
    boundaries (the pack prefers sized functions: a linker-script symbol has no size), then
    global text, local text, weak, the rest."""
    return _MARKER.fullmatch(name) is not None, _ALIAS_RANK.get(kind, 4)


class _Hit:
    __slots__ = ("address", "kind", "name", "offset", "size")

    def __init__(self, name: str, address: int, offset: int, size: int, kind: str):
        self.name, self.address, self.offset, self.size, self.kind = \
            name, address, offset, size, kind

    def __repr__(self) -> str:
        return f"KallsymsHit({self.name!r}, {self.address:#x}+{self.offset:#x}/{self.size:#x})"


class IndexedKallsyms:
    """kallsyms searched in the dump's memory; implements ``vmcore.symbols.SymbolLookup``
    with link-time addresses (the KASLR ``slide`` subtracted), as
    :class:`vmcore.kallsyms.Kallsyms` does. ``layout`` is ``relative``, ``absolute-percpu`` or
    ``absolute``."""

    def __init__(self, mem: PageReader, count: int, tokens: list[bytes], names: int,
                 names_end: int, markers: array, seqs: int, slide: int):
        self._mem, self._count, self._tokens = mem, count, tokens
        self._names, self._names_end, self._markers, self._seqs = \
            names, names_end, markers, seqs
        self._slide = slide
        self._blocks: dict[int, tuple[bytes, list[int]]] = {}
        self._typed_cache: dict[int, bytes] = {}
        self._by_name: dict[str, int | None] = {}
        self._raw = self._relative
        self._table, self._base = 0, 0
        self.layout = ""

    def __len__(self) -> int:
        return self._count

    # -- names -----------------------------------------------------------------------------
    def _block(self, k: int, upto: int = 255) -> tuple[bytes, list[int]]:
        """Block ``k`` of 256 names: its bytes and where the length byte of each of its first
        ``upto + 1`` names is (the walk stops there and resumes on a later call)."""
        got = self._blocks.get(k)
        if got is None:
            start = self._markers[k]
            end = self._markers[k + 1] if k + 1 < len(self._markers) else self._names_end
            if not start < end <= start + 256 * (_NAME_MAX + 2):
                raise BadKallsyms(f"kallsyms: marker {k} gives an impossible block")
            got = (self._mem.read(self._names + start, end - start), [0])
            self._blocks[k] = got
        data, starts = got
        names = min(256, self._count - 256 * k)
        want = min(upto, names)  # ``names``: one past the last, where it ends
        if len(starts) > want:
            return got
        pos, size = starts[-1], len(data)
        while len(starts) <= want:
            if pos >= size:
                raise BadKallsyms(f"kallsyms: block {k} ends before its names")
            n = data[pos]
            if n & 0x80:  # v6.1 (commit 73bbb94466fd): a two-byte length for long names
                n = ((n & 0x7F) | (data[pos + 1] << 7) if pos + 1 < size else 0) + 1
            pos += n + 1
            starts.append(pos)
        if starts[want] > size or (want < names and starts[want] == size):
            raise BadKallsyms(f"kallsyms: block {k} runs past its end")
        return got

    def _typed(self, i: int) -> bytes:
        """Name ``i`` expanded, its type letter first."""
        got = self._typed_cache.get(i)
        if got is not None:
            return got
        if not 0 <= i < self._count:
            raise BadKallsyms(f"kallsyms: symbol index {i} out of range")
        data, starts = self._block(i >> 8, i & 0xFF)
        pos = starts[i & 0xFF]
        n = data[pos]
        if n & 0x80:
            n = (n & 0x7F) | (data[pos + 1] << 7)
            pos += 1
        if not 0 < n <= _NAME_MAX:
            raise BadKallsyms(f"kallsyms: name {i} has impossible length {n}")
        out = b"".join(map(self._tokens.__getitem__, data[pos + 1:pos + 1 + n]))
        self._typed_cache[i] = out
        return out

    def _seq(self, j: int) -> int:
        b = self._mem.read(self._seqs + 3 * j, 3)
        return (b[0] << 16) | (b[1] << 8) | b[2]

    def _index_of(self, name: bytes) -> int | None:
        """Index of the first symbol called ``name`` (lowest address), by binary search over
        ``kallsyms_seqs_of_names`` (names compared without their type letter, as strcmp)."""
        def key(j: int) -> bytes:
            return self._typed(self._seq(j))[1:]

        j = bisect.bisect_left(range(self._count), name, key=key)
        if j < self._count and key(j) == name:
            return self._seq(j)
        return None

    # -- addresses -------------------------------------------------------------------------
    def _relative(self, i: int) -> int:
        return (self._base + self._mem.u32(self._table + 4 * i)) & _MASK

    def _percpu(self, i: int) -> int:
        o = self._mem.s32(self._table + 4 * i)
        return o if o >= 0 else (self._base - 1 - o) & _MASK

    def _absolute(self, i: int) -> int:
        return int.from_bytes(self._mem.read(self._table + 8 * i, 8), "little")

    def _addr(self, i: int) -> int:
        a = self._raw(i)
        return a - self._slide if a >= _START_KERNEL_MAP + self._slide else a

    # -- SymbolLookup ----------------------------------------------------------------------
    def address_of(self, name: str) -> int | None:
        """Link-time address of ``name`` (the first one when names repeat)."""
        if name in self._by_name:
            return self._by_name[name]
        try:
            i = self._index_of(name.encode("utf-8", "replace"))
            addr = None if i is None else self._addr(i)
        except AnalyzerError as exc:
            reraise_retryable(exc)
            addr = None
        self._by_name[name] = addr
        return addr

    def lookup(self, address: int) -> _Hit | None:
        """The symbol containing link-time ``address`` (preferred alias: global text)."""
        try:
            return self._lookup(address)
        except AnalyzerError as exc:
            reraise_retryable(exc)
            return None

    def _lookup(self, address: int) -> _Hit | None:
        n, key = self._count, self._addr
        i = bisect.bisect_right(range(n), address, key=key) - 1
        if i < 0:
            return None
        start = key(i)
        first = bisect.bisect_left(range(i + 1), start, key=key)
        nxt = bisect.bisect_right(range(n), start, i, key=key)
        if nxt < n:
            span = key(nxt) - start
        else:
            end = self.address_of("_etext")
            if end is None or end <= start:
                return None
            span = end - start
        if not 0 <= address - start < span:
            return None
        best: tuple[tuple[bool, int], bytes] | None = None
        for k in range(first, min(nxt, first + _MAX_ALIASES)):
            typed = self._typed(k)
            rank = alias_rank(chr(typed[0]), typed[1:].decode("utf-8", "replace"))
            if best is None or rank < best[0]:
                best = (rank, typed)
            if rank == (False, 0):
                break
        assert best is not None
        typed = best[1]
        return _Hit(typed[1:].decode("utf-8", "replace"), start, address - start, span,
                    chr(typed[0]))


def _where(mem: PageReader, count: int, syms: dict[str, int]) -> tuple[array, int, int] | None:
    """(markers, names_end, seqs address) when the tables sit where ``scripts/kallsyms.c``
    puts them, else None. Two orders are known: names, markers, seqs_of_names, token_table
    (v6.2, Debian's 6.1); and names, markers, token_table, token_index, offsets,
    relative_base, seqs_of_names (6.12 checked)."""
    names, token_table = syms["kallsyms_names"], syms["kallsyms_token_table"]
    nm = (count + 255) // 256
    seqs = (token_table - 3 * count) & ~7
    candidates = [((seqs - 4 * nm) & ~7, seqs)]
    if "kallsyms_relative_base" in syms:
        candidates.append(((token_table - 4 * nm) & ~7, syms["kallsyms_relative_base"] + 8))
    for markers_at, seqs_at in candidates:
        markers = _markers(mem, count, names, markers_at)
        if markers is not None:
            return markers, markers_at - names, seqs_at
    return None


def _markers(mem: PageReader, count: int, names: int, markers_at: int) -> array | None:
    """The markers at ``markers_at`` if they fit: they start at 0 and grow, and the last
    block of names, walked from the last one, ends right before them."""
    nm = (count + 255) // 256
    if not names < markers_at:
        return None
    markers = array("I")
    markers.frombytes(mem.read(markers_at, 4 * nm))
    if markers.itemsize != 4 or markers[0] != 0 or \
            any(a >= b for a, b in pairwise(markers)) or \
            markers[-1] >= markers_at - names:
        return None
    ks = IndexedKallsyms(mem, count, [], names, markers_at - names, markers, 0, 0)
    try:
        _data, starts = ks._block(nm - 1, 256)  # one past the last name: where it ends
    except BadKallsyms:
        return None
    # the last name ends where the markers begin, give or take the alignment
    if not markers_at - 8 < names + markers[-1] + starts[-1] <= markers_at:
        return None
    return markers


def open_indexed(read_mem: PageReader, syms: dict[str, int], count: int,
                 tokens: list[bytes], slide: int) -> IndexedKallsyms | None:
    """kallsyms looked up in place, or None when the markers and the name index are not
    where they should be (before v6.2 without the backport, or a lying table). Raises
    :class:`BadKallsyms` when ``_stext`` decodes to neither layout."""
    try:
        where = _where(read_mem, count, syms)
    except AnalyzerError as exc:
        reraise_retryable(exc)
        return None
    if where is None:
        return None
    markers, names_end, seqs = where
    ks = IndexedKallsyms(read_mem, count, tokens, syms["kallsyms_names"], names_end, markers,
                         seqs, slide)
    try:
        i = ks._index_of(b"_stext")
    except AnalyzerError as exc:
        reraise_retryable(exc)
        return None
    if i is None:
        return None
    _set_layout(ks, syms, i)
    return ks


def _set_layout(ks: IndexedKallsyms, syms: dict[str, int], stext_index: int) -> None:
    """The address layout, told apart by decoding ``_stext`` both ways and comparing with
    VMCOREINFO's ``SYMBOL(_stext)``."""
    mem, stext = ks._mem, syms.get("_stext")
    if "kallsyms_addresses" in syms:
        ks._table, ks._raw, ks.layout = syms["kallsyms_addresses"], ks._absolute, "absolute"
        return
    if "kallsyms_offsets" not in syms or "kallsyms_relative_base" not in syms:
        raise BadKallsyms("kallsyms: VMCOREINFO names no kallsyms_offsets/_addresses")
    try:
        ks._table = syms["kallsyms_offsets"]
        ks._base = int.from_bytes(mem.read(syms["kallsyms_relative_base"], 8), "little")
        o = mem.s32(ks._table + 4 * stext_index)
    except AnalyzerError as exc:
        raise BadKallsyms(f"kallsyms: kallsyms_offsets unreadable ({exc.what})") from exc
    rel = (ks._base + (o & 0xFFFFFFFF)) & _MASK
    pcpu = o if o >= 0 else (ks._base - 1 - o) & _MASK
    if stext is not None and rel == stext:
        ks._raw, ks.layout = ks._relative, "relative"
    elif stext is not None and pcpu == stext:
        ks._raw, ks.layout = ks._percpu, "absolute-percpu"
    else:
        raise BadKallsyms("kallsyms: _stext decodes to neither VMCOREINFO's address "
                          f"(relative {rel}, absolute-percpu {pcpu})")
