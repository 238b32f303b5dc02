"""kdump-compressed ("diskdump") dumps as written by makedumpfile and QEMU.

Layout (block = ``block_size``): block 0 ``disk_dump_header``; block 1 ``kdump_sub_header``
followed by the ELF notes (``sub_hdr_size`` blocks in all); the bitmaps (``bitmap_blocks``
blocks: valid-RAM half then dumpable half); the 24-byte ``page_desc`` array, one per dumpable
page in pfn order; page data. Sources: makedumpfile ``diskdump_mod.h``; libkdumpfile
``diskdump.c``; crash ``diskdump.c``. Only the little-endian 64-bit layout is read.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import NamedTuple

from vmcore.compression import decompress_page, method_name
from vmcore.errors import CorruptDump, PageExcluded, UnsupportedDump
from vmcore.source import ByteSource, read_exact

__all__ = ["KdumpFile", "KdumpHeader", "parse_header"]

SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
HEADER_SIZE = 464
SUB_HEADER_SIZE = 104
STATUS_INCOMPLETE = 0x8
PAGE_DESC_SIZE = 24
# Bitmap rank is computed over chunks of this many bytes (32768 pfns each).
_RANK_CHUNK = 4096
_PAGE_CACHE = 256
_SUB = 128  # bytes of bitmap counted at once by the rank lookup
_DESC_CHUNK = 170  # page descriptors read at once (4080 bytes)
_UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")


class KdumpHeader(NamedTuple):
    """``disk_dump_header`` + ``kdump_sub_header`` fields; sizes in bytes, times in seconds.

    ``phys_base`` is the sub-header's value (bogus in QEMU dumps: prefer VMCOREINFO's).
    ``vmcoreinfo``/``notes`` are ``(file offset, size)`` or None when the version lacks them.
    """

    signature: str
    version: int
    utsname: dict[str, str]
    timestamp: int
    timestamp_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    nr_cpus: int
    current_cpu: int
    phys_base: int | None
    dump_level: int | None
    vmcoreinfo: tuple[int, int] | None
    notes: tuple[int, int] | None

    @property
    def compression(self) -> str:
        """Compression named in ``status`` (``none`` when unset)."""
        return method_name(self.status)

    @property
    def incomplete(self) -> bool:
        """makedumpfile ran out of space: some page descriptors have offset 0."""
        return bool(self.status & STATUS_INCOMPLETE)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_header(src: ByteSource) -> KdumpHeader:
    """Read and validate block 0 and the sub-header; every bound is checked against the file."""
    raw = read_exact(src, 0, HEADER_SIZE, "disk_dump_header")
    if raw[:8] not in SIGNATURES:
        raise CorruptDump("no kdump signature in the first 8 bytes", offset=0)  # never quoted
    (version,) = struct.unpack_from("<i", raw, 8)
    uts = {f: _cstr(raw[12 + 65 * i : 12 + 65 * (i + 1)]) for i, f in enumerate(_UTS_FIELDS)}
    tv_sec, tv_usec = struct.unpack_from("<qq", raw, 408)
    (status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr32, _total, _dev, _written,
     current_cpu, nr_cpus) = struct.unpack_from("<iiiiIiiiii", raw, 424)
    if not 1 <= version <= 64:
        raise CorruptDump(f"header_version {version} out of range", offset=8)
    if block_size < 512 or block_size > (1 << 20) or block_size & (block_size - 1):
        raise CorruptDump(f"block_size {block_size} is not a power of two in 512..1M",
                          offset=428)
    if sub_hdr_size < 0 or bitmap_blocks <= 0:
        raise CorruptDump(f"sub_hdr_size {sub_hdr_size} / bitmap_blocks {bitmap_blocks} invalid",
                          offset=432)
    data_start = (1 + sub_hdr_size + bitmap_blocks) * block_size
    if data_start > src.size:
        raise CorruptDump(
            f"bitmaps end at {data_start:#x}, past the end of the dump ({src.size:#x})",
            offset=436)
    if nr_cpus < 0 or nr_cpus > 65536:
        raise CorruptDump(f"nr_cpus {nr_cpus} out of range", offset=460)
    phys_base = dump_level = None
    vmci = notes = None
    max_mapnr = max_mapnr32
    if sub_hdr_size > 0:
        sub = read_exact(src, block_size, SUB_HEADER_SIZE, "kdump_sub_header")
        phys_base = struct.unpack_from("<Q", sub, 0)[0]
        dump_level = struct.unpack_from("<i", sub, 8)[0]
        sub_end = (1 + sub_hdr_size) * block_size

        def span(at: int) -> tuple[int, int] | None:
            off, size = struct.unpack_from("<QQ", sub, at)
            if size == 0:
                return None
            if off + size > sub_end or off < block_size:
                raise CorruptDump(f"sub-header range {off:#x}+{size:#x} outside the sub-header "
                                  f"blocks", offset=block_size + at)
            return off, size

        if version >= 3:
            vmci = span(32)
        if version >= 4:
            notes = span(48)
        if version >= 6:
            max_mapnr = struct.unpack_from("<Q", sub, 96)[0]
    half_needed = (max_mapnr + 7) // 8
    if max_mapnr <= 0 or half_needed > bitmap_blocks * block_size:
        raise CorruptDump(f"max_mapnr {max_mapnr} needs {half_needed} bitmap bytes, header has "
                          f"{bitmap_blocks * block_size}", offset=440)
    return KdumpHeader(
        signature=_cstr(raw[:8]).strip(), version=version, utsname=uts, timestamp=tv_sec,
        timestamp_usec=tv_usec, status=status, block_size=block_size,
        sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks, max_mapnr=max_mapnr,
        nr_cpus=nr_cpus, current_cpu=current_cpu, phys_base=phys_base, dump_level=dump_level,
        vmcoreinfo=vmci, notes=notes,
    )


class KdumpFile:
    """Physical memory of a kdump-compressed dump, read page by page on demand.

    Memory use is bounded: a rank table of one integer per 32768 pfns (only up to the highest
    pfn asked for) and an LRU of decompressed pages.
    """

    format = "kdump"

    def __init__(self, src: ByteSource, header: KdumpHeader | None = None):
        self.src = src
        self.header = h = header or parse_header(src)
        self.page_size = h.block_size
        bitmap_off = (1 + h.sub_hdr_size) * h.block_size
        bitmap_len = h.bitmap_blocks * h.block_size
        half = (h.max_mapnr + 7) // 8
        # Two halves when there is room for both (crash's rule); the old single-bitmap layout
        # otherwise, where the one bitmap serves for both.
        two = bitmap_len >= 2 * (-(-half // h.block_size)) * h.block_size
        self._bitmap2 = bitmap_off + bitmap_len // 2 if two else bitmap_off
        self._bitmap_bytes = half
        self._desc_off = bitmap_off + bitmap_len
        self._rank: list[int] = [0]  # dumpable pages before each rank chunk
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        self._pages: OrderedDict[int, bytes] = OrderedDict()
        self._descs: OrderedDict[int, bytes] = OrderedDict()  # chunks of page descriptors
        self._subs: OrderedDict[int, tuple[bytes, list[int]]] = OrderedDict()

    @property
    def compression(self) -> str:
        return self.header.compression

    def notes_blob(self) -> tuple[bytes, int] | None:
        """The ELF note stream and its file offset, when the header has one."""
        if self.header.notes is None:
            return None
        off, size = self.header.notes
        return read_exact(self.src, off, size, "ELF notes"), off

    def vmcoreinfo_blob(self) -> bytes | None:
        """The VMCOREINFO text from the sub-header, when present."""
        if self.header.vmcoreinfo is None:
            return None
        off, size = self.header.vmcoreinfo
        return read_exact(self.src, off, size, "VMCOREINFO")

    def _chunk(self, i: int) -> bytes:
        c = self._chunks.get(i)
        if c is None:
            start = i * _RANK_CHUNK
            n = min(_RANK_CHUNK, self._bitmap_bytes - start)
            c = read_exact(self.src, self._bitmap2 + start, n, "dumpable-page bitmap")
            self._chunks[i] = c
            if len(self._chunks) > 64:
                self._chunks.popitem(last=False)
        return c

    def _desc_index(self, pfn: int) -> int | None:
        """Index of ``pfn``'s page descriptor, None when the page is not in the dump."""
        if pfn < 0 or pfn >= self.header.max_mapnr:
            return None
        byte = pfn >> 3
        ci = byte // _RANK_CHUNK
        chunk = self._chunk(ci)
        local = byte - ci * _RANK_CHUNK
        if not chunk[local] >> (pfn & 7) & 1:
            return None
        while len(self._rank) <= ci:
            j = len(self._rank) - 1
            self._rank.append(self._rank[j] + int.from_bytes(self._chunk(j), "little").bit_count())
        sub = local & ~(_SUB - 1)
        below = self._sub_ranks(ci, chunk)[sub // _SUB]
        below += int.from_bytes(chunk[sub:local], "little").bit_count()
        below += (chunk[local] & ((1 << (pfn & 7)) - 1)).bit_count()
        return self._rank[ci] + below

    def _sub_ranks(self, ci: int, chunk: bytes) -> list[int]:
        """Dumpable pages before each ``_SUB``-byte piece of bitmap chunk ``ci``: a lookup
        then counts bits in at most ``_SUB`` bytes, not in up to the whole chunk."""
        got = self._subs.get(ci)
        if got is None or got[0] is not chunk:
            counts = [0]
            for at in range(0, len(chunk), _SUB):
                counts.append(counts[-1] + int.from_bytes(chunk[at:at + _SUB],
                                                          "little").bit_count())
            got = (chunk, counts)
            self._subs[ci] = got
            if len(self._subs) > 64:
                self._subs.popitem(last=False)
        return got[1]

    def _descriptor(self, idx: int, at: int, pfn: int) -> bytes:
        """Page descriptor ``idx`` (at file offset ``at``), read with its neighbours: pages
        read together (a table in kernel memory) have consecutive descriptors."""
        ci, k = divmod(idx, _DESC_CHUNK)
        chunk = self._descs.get(ci)
        if chunk is None:
            start = self._desc_off + ci * _DESC_CHUNK * PAGE_DESC_SIZE
            n = min(_DESC_CHUNK * PAGE_DESC_SIZE, self.src.size - start)
            chunk = self.src.read(start, n) if n > 0 else b""
            self._descs[ci] = chunk
            if len(self._descs) > 64:
                self._descs.popitem(last=False)
        d = chunk[k * PAGE_DESC_SIZE:(k + 1) * PAGE_DESC_SIZE]
        if len(d) == PAGE_DESC_SIZE:
            return d
        return read_exact(self.src, at, PAGE_DESC_SIZE, f"page descriptor of pfn {pfn:#x}")

    def read_page(self, pfn: int) -> bytes:
        """The ``page_size`` bytes of page frame ``pfn`` or :class:`PageExcluded`."""
        page = self._pages.get(pfn)
        if page is not None:
            self._pages.move_to_end(pfn)
            return page
        idx = self._desc_index(pfn)
        if idx is None:
            raise PageExcluded(f"page frame {pfn:#x} is not in the dump",
                               offset=pfn * self.page_size, space="phys")
        at = self._desc_off + idx * PAGE_DESC_SIZE
        d = self._descriptor(idx, at, pfn)
        offset, size, flags, _pflags = struct.unpack("<qIIQ", d)
        if offset == 0 and self.header.incomplete:
            raise PageExcluded(f"page frame {pfn:#x} missing (incomplete dump)",
                               offset=pfn * self.page_size, space="phys")
        if offset < self._desc_off or size == 0 or size > 2 * self.page_size \
                or offset + size > self.src.size:
            raise CorruptDump(f"page descriptor of pfn {pfn:#x}: data {offset:#x}+{size:#x} "
                              f"outside the dump ({self.src.size:#x} bytes)", offset=at)
        data = read_exact(self.src, offset, size, f"page data of pfn {pfn:#x}")
        if flags & ~0x27:
            raise UnsupportedDump(f"page descriptor flags {flags:#x}", offset=at)
        page = decompress_page(flags, data, self.page_size, offset)
        self._pages[pfn] = page
        if len(self._pages) > _PAGE_CACHE:
            self._pages.popitem(last=False)
        return page

    def read_phys(self, paddr: int, length: int) -> bytes:
        """``length`` bytes of physical memory at ``paddr`` (may span pages)."""
        out = []
        ps = self.page_size
        while length > 0:
            pfn, off = divmod(paddr, ps)
            n = min(length, ps - off)
            out.append(self.read_page(pfn)[off : off + n])
            paddr += n
            length -= n
        return b"".join(out)
