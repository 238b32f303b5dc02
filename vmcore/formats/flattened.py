"""The flattened format (``makedumpfile -F``, kdump-tools' default, QEMU's kdump output).

A 4096-byte header (``"makedumpfile"`` signature, big-endian ``type`` and ``version`` = 1), then
records of a big-endian ``{int64 offset; int64 size}`` header followed by ``size`` bytes, each
one ``pwrite`` of the normal writer; ``offset = size = -1`` ends the stream. Later records win
where they overlap (``makedumpfile -R`` replays them in order).

:class:`FlatIndexBuilder` builds the offset index in one sequential pass over chunks of any
size (the agent feeds it while uploading); :meth:`FlatIndex.to_bytes` gives a compact form to
store beside the dump. :class:`FlattenedSource` presents the reassembled file as a
:class:`~vmcore.source.ByteSource`, reading only the records a range touches.
"""

from __future__ import annotations

import bisect
import struct
from typing import NamedTuple

from vmcore.errors import CorruptDump
from vmcore.source import ByteSource, read_exact

__all__ = ["FLAT_HEADER_SIZE", "INDEX_SUFFIX", "FlatIndex", "FlatIndexBuilder", "FlattenedSource",
           "build_index", "is_flattened", "scan_prefix"]

FLAT_SIGNATURE = b"makedumpfile"
#: Where a stored index lives: beside the dump, at the dump's key or path plus this suffix.
INDEX_SUFFIX = ".flatindex"
FLAT_HEADER_SIZE = 4096
_REC = struct.Struct(">qq")
_INDEX_MAGIC = b"CFFLATI1"
_INDEX_HEAD = struct.Struct("<8sQQQQ")  # magic, count, logical size, source size, complete
_SEG = struct.Struct("<QQQ")
# A record larger than this is a lying header, not a pwrite (makedumpfile writes <= a few MiB).
MAX_RECORD = 1 << 30


def is_flattened(head: bytes) -> bool:
    """True when ``head`` (the first 32 bytes or more) starts a flattened dump."""
    return (len(head) >= 32 and head[:16].rstrip(b"\0") == FLAT_SIGNATURE
            and struct.unpack_from(">q", head, 16)[0] == 1)


class FlatIndex(NamedTuple):
    """Where each byte of the reassembled dump lives in the flattened file.

    ``segments`` are disjoint ``(logical offset, length, file offset)`` triples sorted by
    logical offset; ``logical_size`` is the reassembled size in bytes; ``source_size`` the
    flattened file's size; ``complete`` is False when the end marker was missing (truncated).
    """

    segments: tuple[tuple[int, int, int], ...]
    logical_size: int
    source_size: int
    complete: bool

    def to_bytes(self) -> bytes:
        """A compact little-endian serialisation (24 bytes per segment)."""
        head = _INDEX_HEAD.pack(_INDEX_MAGIC, len(self.segments), self.logical_size,
                                self.source_size, int(self.complete))
        return head + b"".join(_SEG.pack(*s) for s in self.segments)

    @classmethod
    def from_bytes(cls, data: bytes) -> FlatIndex:
        """Inverse of :meth:`to_bytes`; validates sizes and ordering."""
        if len(data) < _INDEX_HEAD.size:
            raise CorruptDump("flat index shorter than its header", offset=0)
        magic, count, logical, source, complete = _INDEX_HEAD.unpack_from(data, 0)
        if magic != _INDEX_MAGIC:
            raise CorruptDump("flat index without its magic", offset=0)
        if len(data) != _INDEX_HEAD.size + count * _SEG.size:
            raise CorruptDump(f"flat index of {len(data)} bytes does not hold {count} segments",
                              offset=8)
        segs = tuple(_SEG.unpack_from(data, _INDEX_HEAD.size + i * _SEG.size)
                     for i in range(count))
        prev_end = 0
        for i, (lo, ln, fo) in enumerate(segs):
            if lo < prev_end or lo + ln > logical or fo + ln > source:
                raise CorruptDump(f"flat index segment {i} out of order or bounds",
                                  offset=_INDEX_HEAD.size + i * _SEG.size)
            prev_end = lo + ln
        return cls(segs, logical, source, bool(complete))


class FlatIndexBuilder:
    """Builds a :class:`FlatIndex` from the flattened stream fed in chunks, in one pass.

    Memory: the record list (one triple per record) plus at most 16 buffered bytes.
    """

    def __init__(self) -> None:
        self._pos = 0  # bytes consumed so far
        self._head = bytearray()
        self._pending = bytearray()  # partial record header
        self._skip = 0  # payload bytes still to pass
        self._records: list[tuple[int, int, int]] = []
        self._done = False

    def feed(self, chunk: bytes | memoryview) -> None:
        """Consume the next ``chunk`` of the file (any size, in order)."""
        view = memoryview(chunk)
        i = 0
        n = len(view)
        while i < n and not self._done:
            if len(self._head) < FLAT_HEADER_SIZE:
                take = min(FLAT_HEADER_SIZE - len(self._head), n - i)
                self._head += view[i : i + take]
                i += take
                if len(self._head) == FLAT_HEADER_SIZE and not is_flattened(bytes(self._head)):
                    raise CorruptDump("no makedumpfile flattened signature", offset=0)
                continue
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            take = min(_REC.size - len(self._pending), n - i)
            self._pending += view[i : i + take]
            i += take
            if len(self._pending) < _REC.size:
                continue
            at = self._pos + i - _REC.size
            offset, size = _REC.unpack(self._pending)
            self._pending.clear()
            if offset == -1 and size == -1:
                self._done = True
                break
            if offset < 0 or size < 0 or size > MAX_RECORD:
                raise CorruptDump(f"flattened record header offset {offset} size {size}",
                                  offset=at)
            self._records.append((offset, size, at + _REC.size))
            self._skip = size
        self._pos += n

    def finish(self) -> FlatIndex:
        """The index of everything fed; a missing end marker gives ``complete=False`` and
        drops a record whose payload was cut short."""
        records = self._records
        if self._skip and records:
            lo, size, fo = records[-1]
            records = [*records[:-1], (lo, size - self._skip, fo)]
        return _resolve(records, self._pos, self._done)


def _resolve(records: list[tuple[int, int, int]], source_size: int,
             complete: bool) -> FlatIndex:
    """Turn records (later wins) into disjoint segments sorted by logical offset."""
    starts: list[int] = []  # covered intervals, disjoint, sorted
    ends: list[int] = []
    pieces: list[tuple[int, int, int]] = []
    for lo, size, fo in reversed(records):
        if size <= 0:
            continue
        hi = lo + size
        cur = lo
        j = bisect.bisect_right(ends, lo)  # first covered interval ending after lo
        new_s: list[int] = []
        new_e: list[int] = []
        k = j
        while cur < hi:
            if k < len(starts) and starts[k] < hi:
                if starts[k] > cur:
                    pieces.append((cur, starts[k] - cur, fo + cur - lo))
                cur = max(cur, ends[k])
                k += 1
            else:
                pieces.append((cur, hi - cur, fo + cur - lo))
                cur = hi
        # merge [lo, hi) with the covered intervals j..k-1 it touched
        m_lo = min(lo, starts[j]) if j < k else lo
        m_hi = max(hi, ends[k - 1]) if j < k else hi
        new_s.append(m_lo)
        new_e.append(m_hi)
        starts[j:k] = new_s
        ends[j:k] = new_e
    pieces.sort()
    logical = max((lo + ln for lo, ln, _ in pieces), default=0)
    return FlatIndex(tuple(pieces), logical, source_size, complete)


def scan_prefix(src: ByteSource, max_records: int = 64) -> FlatIndex:
    """Index only the first ``max_records`` records (enough for the header blocks, the
    sub-header and VMCOREINFO, which makedumpfile and QEMU write first)."""
    return build_index(src, max_records=max_records)


def build_index(src: ByteSource, max_records: int | None = None) -> FlatIndex:
    """Index a flattened dump by reading only its record headers (skipping payloads);
    ``max_records`` stops early (the index is then marked incomplete)."""
    head = read_exact(src, 0, FLAT_HEADER_SIZE, "flattened header")
    if not is_flattened(head):
        raise CorruptDump("no makedumpfile flattened signature", offset=0)
    records: list[tuple[int, int, int]] = []
    pos = FLAT_HEADER_SIZE
    complete = False
    end = src.size
    while pos + _REC.size <= end:
        if max_records is not None and len(records) >= max_records:
            break
        offset, size = _REC.unpack(src.read(pos, _REC.size))
        if offset == -1 and size == -1:
            complete = True
            pos += _REC.size
            break
        if offset < 0 or size < 0 or size > MAX_RECORD:
            raise CorruptDump(f"flattened record header offset {offset} size {size}", offset=pos)
        payload = min(size, end - pos - _REC.size)
        records.append((offset, payload, pos + _REC.size))
        pos += _REC.size + size
    return _resolve(records, src.size, complete)


class FlattenedSource:
    """The reassembled dump seen through a :class:`FlatIndex`. Bytes no record wrote read as
    zeros (as after ``makedumpfile -R`` into a fresh file)."""

    def __init__(self, src: ByteSource, index: FlatIndex):
        if index.source_size > src.size:
            raise CorruptDump(f"flat index describes {index.source_size} bytes, source has "
                              f"{src.size}", offset=src.size)
        self._src = src
        self.index = index
        self._starts = [s[0] for s in index.segments]

    @property
    def size(self) -> int:
        return self.index.logical_size

    @property
    def name(self) -> str:
        return f"{self._src.name} (flattened)"

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return b""
        out = bytearray(end - offset)
        segs = self.index.segments
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(segs) and segs[i][0] < end:
            lo, ln, fo = segs[i]
            a, b = max(lo, offset), min(lo + ln, end)
            if a < b:
                out[a - offset : b - offset] = read_exact(self._src, fo + a - lo, b - a,
                                                          "flattened record payload")
            i += 1
        return bytes(out)

