"""The kernel log from the lockless printk ringbuffer (Linux 5.10+), with VMCOREINFO alone.

Walk (kernel ``kernel/printk/printk_ringbuffer.c``; makedumpfile ``printk.c``): read ``*prb``;
descriptor ids run from ``tail_id`` to ``head_id``; a descriptor whose ``state_var`` carries
the same id in state committed (1) or finalized (2) has a record. Its text block is at
``begin % size`` (after an 8-byte block id), unless the block wraps: wrapping is decided by
comparing the wrap counts of ``begin`` and ``next - 1`` (kernel commit 67e1b0052f6bb8 lets a
block end exactly at the ring's end), never by ``next % size == 0``. Blocks with ``lpos & 1``
carry no data.

The legacy ``log_buf`` of ``struct printk_log`` (3.5-5.9) is not read: no such kernel was
available to verify against, so it is reported as unsupported.

:func:`format_dmesg` renders records exactly as ``makedumpfile --dump-dmesg`` does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from vmcore.errors import AnalyzerError, CorruptDump, PageExcluded, UnsupportedDump
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import KernelMemory

__all__ = ["LogRecord", "PrintkLog", "format_dmesg", "read_printk"]

_DESC_ID_MASK = (1 << 62) - 1
_CALLER_CPU = 0x80000000
# Bounds from the kernel's limits (CONFIG_LOG_BUF_SHIFT <= 25, PRB_AVGBITS = 5), with headroom.
MAX_SIZE_BITS = 28
MAX_COUNT_BITS = 24
_WINDOW = 16 * 1024  # a few pages: the ring arrays are mostly unused on a short log
_MAX_NOTES = 16
# The ring's structs are tens of bytes on every kernel; a larger SIZE() is a corrupt VMCOREINFO
# and must not become a read (or an allocation) that large.
_MAX_STRUCT = 4096


class LogRecord(NamedTuple):
    """One printk record: ``seq`` number, ``ts_nsec`` (ns since boot), ``caller_id`` (bit 31
    set: CPU number, else thread id; None when the kernel does not record it), raw ``text``."""

    seq: int
    ts_nsec: int
    caller_id: int | None
    text: bytes

    @property
    def caller(self) -> str | None:
        """``T<pid>`` or ``C<cpu>`` as the kernel prints it, or None."""
        return None if self.caller_id is None else _caller_tag(self.caller_id).decode()


def _caller_tag(caller_id: int) -> bytes:
    """A caller id as the kernel prints it: ``C<cpu>`` with bit 31 set, else ``T<pid>``."""
    return b"%c%d" % (67 if caller_id & _CALLER_CPU else 84, caller_id & ~_CALLER_CPU)


class PrintkLog(NamedTuple):
    """The records read, oldest first. ``partial`` is True when the walk stopped early or
    skipped unreadable records; ``notes`` say why."""

    records: tuple[LogRecord, ...]
    partial: bool
    notes: tuple[str, ...]

    def text(self) -> str:
        """The message text, one line per record line (no prefixes), for the oops parser.
        Undecodable bytes and NUL become U+FFFD: the kernel's vsnprintf never writes a NUL
        into a record, so one is crafted, and no text sink downstream (PostgreSQL text, C
        strings) can hold it."""
        return "\n".join(r.text.decode("utf-8", "replace") for r in self.records) \
            .replace("\x00", "\ufffd")


class _Window:
    """Reads ``[base, base + total)`` of kernel memory through one cached window.

    Pages missing from the dump read as zeros and are counted in ``excluded``: makedumpfile's
    ``-d 1`` drops zero-filled pages, which the unused tail of a ring array often is, and a zero
    descriptor is simply an unused one (makedumpfile's readmem does the same).
    """

    def __init__(self, mem: KernelMemory, base: int, total: int):
        self.mem, self.base, self.total = mem, base, total
        self._start = -1
        self._data = b""
        self.excluded = 0

    def _load(self, vaddr: int, length: int) -> bytes:
        try:
            return self.mem.read(vaddr, length)
        except PageExcluded:
            parts = []
            end = vaddr + length
            while vaddr < end:
                n = min(end - vaddr, 4096 - (vaddr & 0xFFF))
                try:
                    parts.append(self.mem.read(vaddr, n))
                except PageExcluded:
                    parts.append(bytes(n))
                    self.excluded += 1
                vaddr += n
            return b"".join(parts)

    def view(self, off: int, n: int) -> tuple[bytes, int]:
        """The cached bytes holding ``[off, off + n)`` and where that range starts in them."""
        if off < 0 or off + n > self.total:
            raise CorruptDump(f"read of {n} bytes at {off:#x} outside a {self.total:#x}-byte "
                              f"array", offset=self.base + off, space="virt")
        s = off - self._start
        if s < 0 or s + n > len(self._data):
            length = min(max(_WINDOW, n), self.total - off)
            self._data = self._load(self.base + off, length)
            self._start, s = off, 0
        return self._data, s

    def get(self, off: int, n: int) -> bytes:
        data, s = self.view(off, n)
        return data[s : s + n]


def _layout(size: int, fields: list[tuple[int, str]]) -> struct.Struct:
    """A little-endian Struct of exactly ``size`` bytes reading ``fields`` (offset, format
    code), in the order given: one unpack per record instead of one per field."""
    fmt, pos = "<", 0
    for off, code in fields:
        if off < pos:  # overlapping or out of order: VMCOREINFO offsets no kernel has
            raise CorruptDump(f"printk record fields overlap at offset {off}")
        fmt += f"{off - pos}x{code}" if off > pos else code
        pos = off + struct.calcsize("<" + code)
    if pos > size:
        raise CorruptDump(f"printk record fields end at {pos}, past the {size}-byte record")
    return struct.Struct(fmt + (f"{size - pos}x" if size > pos else ""))


def _struct_size(info: VmcoreInfo, name: str) -> int:
    n = info.size(name)
    if not 0 < n <= _MAX_STRUCT:
        raise CorruptDump(f"VMCOREINFO SIZE({name})={n} is out of range (1..{_MAX_STRUCT})")
    return n


class _Ring(NamedTuple):
    """The ring's geometry read from ``*prb``: ``descs`` descriptors, ``size`` bytes of text;
    the arrays' addresses; the id range to walk."""

    prb: int
    descs: int
    size: int
    descs_addr: int
    infos_addr: int
    data_addr: int
    head_id: int
    tail_id: int


def _ring(mem: KernelMemory, info: VmcoreInfo) -> _Ring:
    if "prb" not in info.symbols:
        if "log_buf" in info.symbols:
            raise UnsupportedDump("unsupported: legacy printk buffer (log_buf, Linux < 5.10)")
        raise CorruptDump("VMCOREINFO has neither SYMBOL(prb) nor SYMBOL(log_buf)")
    o = info.offset
    prb = mem.u64(info.symbol("prb"))
    rb = mem.read(prb, _struct_size(info, "printk_ringbuffer"))
    dr = o("printk_ringbuffer.desc_ring")
    tr = o("printk_ringbuffer.text_data_ring")
    counter = info.offsets.get("atomic_long_t.counter", 0)

    def field(code: str, ring: int, member: str, extra: int = 0) -> int:
        """A member of the ring's descriptor or data ring, read from ``rb``."""
        at = ring + o(member) + extra
        if not 0 <= at <= len(rb) - struct.calcsize(code):
            raise CorruptDump(f"VMCOREINFO places {member} at byte {at} of the {len(rb)}-byte "
                              f"printk_ringbuffer", offset=prb, space="virt")
        return int(struct.unpack_from("<" + code, rb, at)[0])

    count_bits = field("I", dr, "prb_desc_ring.count_bits")
    size_bits = field("I", tr, "prb_data_ring.size_bits")
    if count_bits > MAX_COUNT_BITS or size_bits > MAX_SIZE_BITS or size_bits < 4:
        raise CorruptDump(f"printk ring count_bits {count_bits} size_bits {size_bits} out of "
                          f"range", offset=prb, space="virt")
    return _Ring(prb, 1 << count_bits, 1 << size_bits,
                 field("Q", dr, "prb_desc_ring.descs"), field("Q", dr, "prb_desc_ring.infos"),
                 field("Q", tr, "prb_data_ring.data"),
                 field("Q", dr, "prb_desc_ring.head_id", counter),
                 field("Q", dr, "prb_desc_ring.tail_id", counter))


class _Records(NamedTuple):
    """How to unpack one descriptor and one ``printk_info`` in one call each: the record
    structs and the positions of the wanted fields in their tuples (``call`` -1: no caller
    id)."""

    desc: struct.Struct
    info: struct.Struct
    sv: int
    begin: int
    next: int
    seq: int
    ts: int
    text_len: int
    call: int


def _records_layout(info: VmcoreInfo) -> _Records:
    o = info.offset
    counter = info.offsets.get("atomic_long_t.counter", 0)
    desc_size, info_size = _struct_size(info, "prb_desc"), _struct_size(info, "printk_info")
    lpos = o("prb_desc.text_blk_lpos")
    desc_fields = sorted([(o("prb_desc.state_var") + counter, "sv"),
                          (lpos + o("prb_data_blk_lpos.begin"), "begin"),
                          (lpos + o("prb_data_blk_lpos.next"), "next")])
    desc_rec = _layout(desc_size, [(off, "Q") for off, _ in desc_fields])
    desc_pick = [name for _, name in desc_fields]
    i_caller = info.offsets.get("printk_info.caller_id")
    info_fields = sorted([(o("printk_info.seq"), "Q", "seq"), (o("printk_info.ts_nsec"), "Q", "ts"),
                          (o("printk_info.text_len"), "H", "len")]
                         + ([(i_caller, "I", "caller")] if i_caller is not None else []))
    info_rec = _layout(info_size, [(off, code) for off, code, _ in info_fields])
    info_pick = [name for _, _, name in info_fields]
    return _Records(desc_rec, info_rec, desc_pick.index("sv"), desc_pick.index("begin"),
                    desc_pick.index("next"), info_pick.index("seq"), info_pick.index("ts"),
                    info_pick.index("len"),
                    info_pick.index("caller") if i_caller is not None else -1)


class _Failures:
    """Unreadable records: counted, the first :data:`_MAX_NOTES` noted."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.count = 0

    def add(self, what: str, exc: AnalyzerError) -> None:
        self.count += 1
        if self.count <= _MAX_NOTES:
            self.notes.append(f"{what}: {exc}")


def _text_block(ring: _Ring, begin: int, nxt: int, at: int) -> tuple[int, int]:
    """(offset in the data ring after the block's id, bytes available) of a text block;
    ``at`` is the descriptor's address, for errors."""
    size = ring.size
    if begin // size == (nxt - 1) // size:
        start, avail = begin % size, nxt - begin
    elif (begin + size) // size == (nxt - 1) // size:
        start, avail = 0, nxt % size or size  # wrapped: the block restarts at 0
    else:
        raise CorruptDump(f"text block {begin:#x}..{nxt:#x} is invalid", offset=at, space="virt")
    avail -= 8  # the block starts with its descriptor id
    if avail < 0 or start + 8 + avail > size:
        raise CorruptDump(f"text block of {avail + 8} bytes is invalid", offset=at,
                          space="virt")
    return start + 8, avail


def read_printk(mem: KernelMemory, info: VmcoreInfo) -> PrintkLog:
    """Read every committed/finalized record between the ring's tail and head."""
    ring = _ring(mem, info)
    lay = _records_layout(info)
    count, desc_size, info_size = ring.descs, lay.desc.size, lay.info.size
    descs = _Window(mem, ring.descs_addr, count * desc_size)
    infos = _Window(mem, ring.infos_addr, count * info_size)
    text = _Window(mem, ring.data_addr, ring.size)
    fails = _Failures()
    notes = fails.notes
    tail_id = ring.tail_id
    span = (ring.head_id - tail_id) & _DESC_ID_MASK
    if span >= count:
        notes.append(f"tail_id {tail_id:#x} to head_id {ring.head_id:#x} spans {span + 1} ids, "
                     f"more than the {count} descriptors: read the last {count}")
        tail_id = (ring.head_id - count + 1) & _DESC_ID_MASK
        span = count - 1
    records: list[LogRecord] = []
    per_chunk = max(1, _WINDOW // desc_size)
    step = 0
    while step <= span:
        # Descriptors of consecutive ids sit side by side (until the array wraps): read a
        # window of them at once and unpack it in one call.
        rid0 = (tail_id + step) & _DESC_ID_MASK
        idx0 = rid0 % count
        n = min(span + 1 - step, count - idx0, per_chunk)
        step += n
        try:
            data, at = descs.view(idx0 * desc_size, n * desc_size)
        except AnalyzerError as exc:
            fails.add(f"descriptors {rid0:#x}..{rid0 + n - 1:#x}", exc)
            continue
        block = memoryview(data)[at : at + n * desc_size]
        for k, d in enumerate(lay.desc.iter_unpack(block)):
            rid = (rid0 + k) & _DESC_ID_MASK
            sv, begin, nxt = d[lay.sv], d[lay.begin], d[lay.next]
            if sv & _DESC_ID_MASK != rid or (sv >> 62) not in (1, 2):
                continue
            if begin & 1 or nxt & 1 or begin == nxt:
                continue  # data-less record
            idx = idx0 + k
            try:
                inf = lay.info.unpack_from(*infos.view(idx * info_size, info_size))
                start, avail = _text_block(ring, begin, nxt, ring.descs_addr + idx * desc_size)
                records.append(LogRecord(inf[lay.seq], inf[lay.ts],
                                         inf[lay.call] if lay.call >= 0 else None,
                                         text.get(start, min(inf[lay.text_len], avail))))
            except AnalyzerError as exc:
                fails.add(f"record id {rid:#x}", exc)
    if fails.count > _MAX_NOTES:
        notes.append(f"... {fails.count - _MAX_NOTES} more unreadable records")
    partial = bool(notes)
    if descs.excluded or infos.excluded:
        notes.append(f"{descs.excluded + infos.excluded} descriptor pages not in the dump "
                     "(read as zeros: unused descriptors)")
    return PrintkLog(tuple(records), partial, tuple(notes))


def _escape_table() -> list[bytes]:
    # makedumpfile keeps isprint() || isspace() bytes and prints others as "\\x%02x" of a
    # *signed* char, so bytes >= 0x80 come out as \xffffffNN (C locale).
    table = []
    for c in range(256):
        if 0x20 <= c <= 0x7E or c in (0x09, 0x0A, 0x0B, 0x0C, 0x0D):
            table.append(bytes([c]))
        elif c >= 0x80:
            table.append(b"\\x%08x" % (0xFFFFFF00 | c))
        else:
            table.append(b"\\x%02x" % c)
    return table


_ESCAPE = _escape_table()
_PLAIN = bytes(c for c in range(256) if len(_ESCAPE[c]) == 1 and c != 0x0A)


def format_record(r: LogRecord) -> bytes:
    """One record as ``makedumpfile --dump-dmesg`` prints it (with trailing newline)."""
    ts, cid = r.ts_nsec, r.caller_id
    if cid is None:
        prefix = b"[%5d.%06d] " % (ts // 1_000_000_000, ts % 1_000_000_000 // 1000)
    else:
        prefix = b"[%5d.%06d] [%8s] " % (ts // 1_000_000_000, ts % 1_000_000_000 // 1000,
                                         _caller_tag(cid))
    body = r.text
    if body.translate(None, _PLAIN):  # something needs escaping or indenting
        body = b"".join(_ESCAPE[c] for c in body)
        body = body.replace(b"\n", b"\n" + b" " * len(prefix))
    return prefix + body + b"\n"


def format_dmesg(records: Iterable[LogRecord]) -> bytes:
    """All records, as ``makedumpfile --dump-dmesg`` writes them."""
    return b"".join([format_record(r) for r in records])
