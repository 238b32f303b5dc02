"""The kernel's own symbol table (kallsyms), decoded from the dump's memory.

Since Linux 6.0 VMCOREINFO exports where the tables are (``SYMBOL(kallsyms_names)``,
``kallsyms_num_syms``, ``kallsyms_token_table``, ``kallsyms_token_index``, and either
``kallsyms_offsets`` + ``kallsyms_relative_base`` or ``kallsyms_addresses``). Format
(``scripts/kallsyms.c``): each name is a length byte (two bytes when its top bit is set, v6.1+
"big symbols") followed by that many token indices; a token is a NUL-terminated string in
``kallsyms_token_table`` at the u16 offset ``kallsyms_token_index[i]``; an expanded name's
first character is its ``nm`` type letter.

Addresses, with ``CONFIG_KALLSYMS_BASE_RELATIVE`` (x86_64 always): either plain u32 offsets
from ``kallsyms_relative_base``, or, with ``CONFIG_KALLSYMS_ABSOLUTE_PERCPU`` (x86_64 SMP until
v6.15), non-negative values are absolute (per-cpu offsets) and negative ones are
``relative_base - 1 - value``. Which layout the kernel used is told apart by decoding
``_stext`` both ways and comparing with VMCOREINFO's ``SYMBOL(_stext)`` (no version numbers).

Every count and offset comes from memory and is bounded (:data:`MAX_SYMBOLS`,
:data:`MAX_NAMES_BYTES`): a lying table yields :class:`~vmcore.errors.BadKallsyms`, never
unbounded work.
"""

from __future__ import annotations

import bisect
import contextlib
from array import array
from dataclasses import dataclass
from itertools import accumulate

from vmcore.errors import AnalyzerError, BadKallsyms
from vmcore.kallsyms_index import IndexedKallsyms, alias_rank, open_indexed
from vmcore.pages import PageReader, Reader

__all__ = ["MAX_NAMES_BYTES", "MAX_SYMBOLS", "IndexedKallsyms", "Kallsyms", "KallsymsHit", "Reader",
           "read_kallsyms"]

# the tables scripts/kallsyms.c writes; the first one after kallsyms_names bounds it
_TABLES = ("kallsyms_num_syms", "kallsyms_markers", "kallsyms_seqs_of_names",
           "kallsyms_token_table", "kallsyms_token_index", "kallsyms_offsets",
           "kallsyms_relative_base", "kallsyms_addresses")
MAX_SYMBOLS = 1_000_000  # Debian's 6.x kernels have ~150,000 (CONFIG_KALLSYMS_ALL)
MAX_NAMES_BYTES = 32 << 20
_CHUNK = 64 * 1024
_TOKEN_TABLE_MAX = 64 * 1024
_NAME_MAX = 1024
_START_KERNEL_MAP = 0xFFFFFFFF80000000



@dataclass(frozen=True)
class KallsymsHit:
    """A resolved address: ``address`` of the symbol (link-time), ``offset`` and ``size``
    in bytes (``size`` up to the next symbol, as the kernel's own lookup), ``kind`` its
    ``nm`` letter."""

    name: str
    address: int
    offset: int
    size: int
    kind: str


class Kallsyms:
    """Symbols sorted by address (link-time: the KASLR ``slide`` subtracted from kernel
    addresses); implements ``vmcore.symbols.SymbolLookup``. ``layout`` is ``relative``,
    ``absolute-percpu`` or ``absolute``."""

    def __init__(self, names: list[str], kinds: str, addrs: list[int], layout: str,
                 text_end: int | None = None):
        order = _order(addrs, kinds, names)
        self.addrs = array("Q", (addrs[i] for i in order))
        self.names = [names[i] for i in order]
        self.kinds = "".join(kinds[i] for i in order)
        self.layout = layout
        self._text_end = text_end
        self._by_name: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.addrs)

    def address_of(self, name: str) -> int | None:
        """Link-time address of ``name`` (the first one when names repeat)."""
        if self._by_name is None:
            by: dict[str, int] = {}
            for k, n in enumerate(self.names):
                by.setdefault(n, k)
            self._by_name = by
        i = self._by_name.get(name)
        return None if i is None else int(self.addrs[i])

    def lookup(self, address: int) -> KallsymsHit | None:
        """The symbol containing link-time ``address`` (preferred alias: global text)."""
        addrs = self.addrs
        i = bisect.bisect_right(addrs, address) - 1
        if i < 0:
            return None
        start = addrs[i]
        first = bisect.bisect_left(addrs, start, 0, i + 1)
        nxt = bisect.bisect_right(addrs, start, i)
        if nxt < len(addrs):
            span = addrs[nxt] - start
        elif self._text_end is not None and self._text_end > start:
            span = self._text_end - start
        else:
            return None
        if address - start >= span:
            return None
        return KallsymsHit(self.names[first], start, address - start, span, self.kinds[first])


def _order(addrs: list[int], kinds: str, names: list[str]) -> list[int]:
    """Indices by address; among symbols at one address, by :func:`alias_rank` (functions
    before section boundaries, then global text, local text, weak, the rest: the pack's ELF
    order prefers sized global functions the same way). A stable sort by address (kallsyms
    is sorted already), then each run of aliases."""
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    i, n = 0, len(order)
    while i < n:
        j = i + 1
        a = addrs[order[i]]
        while j < n and addrs[order[j]] == a:
            j += 1
        if j - i > 1:
            order[i:j] = sorted(order[i:j], key=lambda k: alias_rank(kinds[k], names[k]))
        i = j
    return order


def _read(read: Reader, addr: int, length: int, what: str) -> bytes:
    try:
        data = read(addr, length)
    except AnalyzerError as exc:
        raise BadKallsyms(f"kallsyms: {what} unreadable ({exc.what})",
                          offset=addr, space="virt") from exc
    if len(data) != length:
        raise BadKallsyms(f"kallsyms: {what} short read", offset=addr, space="virt")
    return data


def _read_some(read: Reader, addr: int) -> bytes:
    """The next chunk of ``kallsyms_names``: 64 KiB, or up to the page end when the chunk
    runs into unreadable memory (the names may end just before it)."""
    try:
        return read(addr, _CHUNK)
    except AnalyzerError:
        return _read(read, addr, 4096 - (addr & 0xFFF), "kallsyms_names")


def _tokens(read: Reader, table: int, index: int) -> list[str]:
    return [t.decode("utf-8", "replace") for t in _token_bytes(read, table, index)]


def _token_bytes(read: Reader, table: int, index: int) -> list[bytes]:
    offs = array("H")
    offs.frombytes(_read(read, index, 512, "kallsyms_token_index"))
    if max(offs) >= _TOKEN_TABLE_MAX:
        raise BadKallsyms(f"kallsyms: token offset {max(offs)} beyond {_TOKEN_TABLE_MAX}")
    # The index follows the table (scripts/kallsyms.c writes them in that order): read up
    # to it, else a bounded guess past the last token's start.
    span = index - table if table < index <= table + _TOKEN_TABLE_MAX else max(offs) + 256
    raw = _read(read, table, span, "kallsyms_token_table")
    out = []
    for o in offs:
        end = raw.find(b"\0", o)
        if end < 0:
            raise BadKallsyms(f"kallsyms: token at {o} is not terminated")
        out.append(raw[o:end])
    return out


class _Names:
    """``kallsyms_names`` read forward in chunks, only as far as the names go."""

    def __init__(self, read: Reader, start: int):
        self.read, self.start = read, start
        self.buf, self.base, self.pos = b"", start, 0  # base: address of buf[0]

    def take(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            got = self.base + len(self.buf) - self.start
            if got >= MAX_NAMES_BYTES:
                raise BadKallsyms(f"kallsyms: names longer than {MAX_NAMES_BYTES} bytes")
            more = _read_some(self.read, self.base + len(self.buf))
            self.buf, self.base = self.buf[self.pos:] + more, self.base + self.pos
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def _names(read: Reader, start: int, count: int, tokens: list[str],
           end: int | None) -> list[str]:
    """The ``count`` expanded names (type letter first). ``end``: where the next table
    starts, when known: the names are then read in one piece."""
    data = None
    if end is not None and 0 < end - start <= MAX_NAMES_BYTES:
        with contextlib.suppress(BadKallsyms):
            data = _read(read, start, end - start, "kallsyms_names")
    if data is None:
        src = _Names(read, start)
        spans: list[bytes] = []
        for _ in range(count):
            n = src.take(1)[0]
            if n & 0x80:  # v6.1 (commit 73bbb94466fd): a two-byte length for long names
                n = (n & 0x7F) | (src.take(1)[0] << 7)
            _check_len(n, len(spans), src.base + src.pos)
            spans.append(src.take(n))
        return _expand(spans, tokens)
    spans, pos, size = [], 0, len(data)
    append = spans.append
    try:
        for _ in range(count):
            n = data[pos]
            if n & 0x80:  # v6.1 (commit 73bbb94466fd): a two-byte length for long names
                pos += 1
                n = (n & 0x7F) | (data[pos] << 7)
            if not 0 < n <= _NAME_MAX or pos + 1 + n > size:
                raise IndexError
            append(data[pos + 1:pos + 1 + n])
            pos += n + 1
    except IndexError:
        raise BadKallsyms(f"kallsyms: name {len(spans)} of {count} has an impossible length "
                          "or runs past the names", offset=start + pos, space="virt") from None
    return _expand(spans, tokens)


def _check_len(n: int, k: int, at: int) -> None:
    if n == 0 or n > _NAME_MAX:
        raise BadKallsyms(f"kallsyms: name {k} has impossible length {n}", offset=at,
                          space="virt")


def _expand(spans: list[bytes], tokens: list[str]) -> list[str]:
    """Token indices to names, in one pass over all of them: the whole stream is expanded
    at once and cut at the names' ends (prefix sums of the tokens' lengths)."""
    lens = [len(t) for t in tokens]
    if max(lens) > 255:  # not one byte each: expand name by name
        return ["".join([tokens[t] for t in sp]) for sp in spans]
    stream = b"".join(spans)
    text = "".join(map(tokens.__getitem__, stream))
    ends = list(accumulate(stream.translate(bytes(lens)), initial=0))
    out, tok = [], 0
    for sp in spans:
        a = ends[tok]
        tok += len(sp)
        out.append(text[a:ends[tok]])
    return out


def _addresses(read: Reader, syms: dict[str, int], count: int, names: list[str],
               stext: int | None) -> tuple[list[int], str]:
    """Runtime addresses and the layout name, told apart by ``_stext``."""
    if "kallsyms_addresses" in syms:
        raw = array("Q")
        raw.frombytes(_read(read, syms["kallsyms_addresses"], 8 * count, "kallsyms_addresses"))
        return list(raw), "absolute"
    if "kallsyms_offsets" not in syms or "kallsyms_relative_base" not in syms:
        raise BadKallsyms("kallsyms: VMCOREINFO names no kallsyms_offsets/_addresses")
    offs = array("i")
    offs.frombytes(_read(read, syms["kallsyms_offsets"], 4 * count, "kallsyms_offsets"))
    base = int.from_bytes(_read(read, syms["kallsyms_relative_base"], 8,
                                "kallsyms_relative_base"), "little")
    try:
        i = names.index("T_stext")
    except ValueError:
        i = -1
    rel = (base + (offs[i] & 0xFFFFFFFF)) & (2**64 - 1) if i >= 0 else None
    pcpu = (offs[i] if offs[i] >= 0 else base - 1 - offs[i]) if i >= 0 else None
    if stext is not None and rel == stext:
        return [(base + (o & 0xFFFFFFFF)) & (2**64 - 1) for o in offs], "relative"
    if stext is not None and pcpu == stext:
        return [o if o >= 0 else (base - 1 - o) & (2**64 - 1) for o in offs], \
            "absolute-percpu"
    raise BadKallsyms("kallsyms: _stext decodes to neither VMCOREINFO's address "
                      f"(relative {rel}, absolute-percpu {pcpu})")


def read_kallsyms(read: Reader, syms: dict[str, int], slide: int, *, in_place: bool = True
                  ) -> Kallsyms | IndexedKallsyms:
    """kallsyms from memory. ``syms`` are VMCOREINFO's ``SYMBOL()`` entries (runtime
    addresses), ``slide`` the KASLR offset in bytes (subtracted from kernel addresses so that
    lookups take link-time addresses, as a pack's). Looked up in place
    (:mod:`vmcore.kallsyms_index`) when the kernel has the name index (v6.2+ and Debian's
    6.1) and ``in_place``, else every name decoded. Raises :class:`BadKallsyms`."""
    need = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table",
            "kallsyms_token_index")
    missing = [n for n in need if n not in syms]
    if missing:
        raise BadKallsyms(f"kallsyms: VMCOREINFO has no SYMBOL({missing[0]}) (before v6.0)")
    count = int.from_bytes(_read(read, syms["kallsyms_num_syms"], 4, "kallsyms_num_syms"),
                           "little")
    if not 0 < count <= MAX_SYMBOLS:
        raise BadKallsyms(f"kallsyms: kallsyms_num_syms {count} outside 1..{MAX_SYMBOLS}")
    raw_tokens = _token_bytes(read, syms["kallsyms_token_table"], syms["kallsyms_token_index"])
    if in_place:
        indexed = open_indexed(PageReader(read), syms, count, raw_tokens, slide)
        if indexed is not None:
            return indexed
    tokens = [t.decode("utf-8", "replace") for t in raw_tokens]
    start = syms["kallsyms_names"]
    after = [syms[n] for n in _TABLES if n in syms and syms[n] > start]
    typed = _names(read, start, count, tokens, min(after) if after else None)
    addrs, layout = _addresses(read, syms, count, typed, syms.get("_stext"))
    kinds = "".join(n[:1] for n in typed)
    names = [n[1:] for n in typed]
    link = [a - slide if a >= _START_KERNEL_MAP + slide else a for a in addrs]
    text_end = None
    if "_etext" in names:
        text_end = link[names.index("_etext")]
    return Kallsyms(names, kinds, link, layout, text_end)
