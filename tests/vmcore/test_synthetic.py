"""Formats, translation and the printk ring on small synthetic dumps built from the published
layouts (tests/vmcore/dumpkit.py)."""

from __future__ import annotations

import struct

import pytest

from vmcore.analyze import read_header
from vmcore.errors import (
    AddressNotMapped,
    CorruptDump,
    PageExcluded,
    TruncatedDump,
    UnsupportedDump,
)
from vmcore.formats import detect, open_dump
from vmcore.formats.flattened import FlatIndexBuilder, build_index
from vmcore.logread import read_log
from vmcore.printk import LogRecord, format_dmesg, format_record, read_printk
from vmcore.source import BytesSource
from vmcore.vmcoreinfo import parse_vmcoreinfo
from vmcore.x86_64 import KernelMemory

from . import dumpkit as kit

RECORDS = [(b"Linux version 6.1.0-test", 0, 0), (b"second line", 1_500_000_000, 1),
           (b"from cpu", 2_000_001_000, 0x80000003)]
WANT = (b"[    0.000000] [      T0] Linux version 6.1.0-test\n"
        b"[    1.500000] [      T1] second line\n"
        b"[    2.000001] [      C3] from cpu\n")


def _pages(mem: bytearray) -> dict[int, bytes]:
    return {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)
            if any(mem[i : i + 4096])}


def _kdump_with_log(records: list[tuple[bytes, int, int]], **kw: int) -> bytes:
    mem, info = kit.printk_memory(records, **kw)
    return kit.kdump(_pages(mem), info, notes=kit.prstatus(7, 0xFFFFFFFF81000000))


@pytest.mark.parametrize("container", ["kdump", "flattened", "elf", "kdump-raw"])
def test_log_from_each_container(container: str) -> None:
    mem, info = kit.printk_memory(RECORDS)
    notes = kit.note("VMCOREINFO", 0, info) + kit.prstatus(1, 0)
    if container == "elf":
        data = kit.elf_core({0: bytes(mem)}, notes)
    else:
        image = kit.kdump(_pages(mem), info, compress="none" if container == "kdump-raw"
                          else "zlib", max_mapnr=len(mem) // 4096)
        data = kit.flatten(image) if container == "flattened" else image
    _info, log = read_log(open_dump(BytesSource(data)))
    assert format_dmesg(log.records) == WANT
    assert not log.partial


@pytest.mark.parametrize("fixed_wrap", [True, False])
@pytest.mark.parametrize("start", [1024 - 40, 1024 - 48, 1024 - 8, 1024 * 5 - 24])
def test_ring_wrapping(start: int, fixed_wrap: bool) -> None:
    """Blocks that wrap, and one ending exactly at the ring's end (kernel 67e1b0052f6bb8):
    the wrap is decided from the wrap counts of begin and next - 1."""
    recs = [(b"x" * 25, 1000, 1), (b"second record", 2000, 2), (b"third", 3000, 3)]
    mem, info = kit.printk_memory(recs, start_lpos=start, fixed_wrap=fixed_wrap, first_id=5)
    vm = parse_vmcoreinfo(info)
    log = read_printk(KernelMemory(lambda a, n: bytes(mem[a : a + n]), vm), vm)
    assert [r.text for r in log.records] == [r[0] for r in recs]
    assert [r.seq for r in log.records] == [0, 1, 2]


@pytest.mark.parametrize("window", [64, 4096, 16 * 1024])
def test_descriptors_read_in_chunks_across_the_array_wrap(
        monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    """Descriptors are unpacked a window at a time; ids 50..89 of a 64-slot array wrap from
    slot 63 to slot 0, and a tiny window splits them into many chunks: same records."""
    import vmcore.printk as printk

    recs = [(f"record {i}".encode(), 1000 * i, i) for i in range(40)]
    mem, info = kit.printk_memory(recs, size_bits=12, count_bits=6, first_id=50)
    monkeypatch.setattr(printk, "_WINDOW", window)
    vm = parse_vmcoreinfo(info)
    log = read_printk(KernelMemory(lambda a, n: bytes(mem[a : a + n]), vm), vm)
    assert [(r.text, r.ts_nsec, r.caller_id) for r in log.records] == recs
    assert [r.seq for r in log.records] == list(range(40)) and not log.partial


def test_overlapping_record_fields_are_corrupt() -> None:
    """VMCOREINFO offsets that put two printk_info fields on top of each other (no kernel
    does) give a typed error, not a misread."""
    mem, info = kit.printk_memory(RECORDS)
    bad = info.replace(b"OFFSET(printk_info.ts_nsec)=8", b"OFFSET(printk_info.ts_nsec)=4")
    assert bad != info
    vm = parse_vmcoreinfo(bad)
    with pytest.raises(CorruptDump, match="overlap"):
        read_printk(KernelMemory(lambda a, n: bytes(mem[a : a + n]), vm), vm)


def test_escapes_like_makedumpfile() -> None:
    r = LogRecord(0, 12_345_678_901, 42, b"a\x01b\xe9c\tline1\nline2")
    assert format_record(r) == (b"[   12.345678] [     T42] a\\x01b\\xffffffe9c\tline1\n"
                                b"                          line2\n")
    assert format_record(LogRecord(0, 0, None, b"")) == b"[    0.000000] \n"


def test_page_walk_levels() -> None:
    """4-level walk with 4 KiB, 2 MiB and 1 GiB pages; SME bit cleared; unmapped is typed."""
    mem = bytearray(0x600000)
    sme = 1 << 47
    pgd, pud, pmd, pte = 0x1000, 0x2000, 0x3000, 0x4000
    v4k, v2m, v1g = 0xFFFF888000001000, 0xFFFF888000200000, 0xFFFF888040000000

    def idx(v: int, shift: int) -> int:
        return (v >> shift) & 0x1FF

    struct.pack_into("<Q", mem, pgd + 8 * idx(v4k, 39), pud | 0x63 | sme)
    struct.pack_into("<Q", mem, pud + 8 * idx(v4k, 30), pmd | 0x63)
    struct.pack_into("<Q", mem, pud + 8 * idx(v1g, 30), 0x40000000 | 0x80 | 0x63)  # 1 GiB
    struct.pack_into("<Q", mem, pmd + 8 * idx(v4k, 21), pte | 0x63)
    struct.pack_into("<Q", mem, pmd + 8 * idx(v2m, 21), 0x400000 | 0x80 | 0x63)  # 2 MiB
    struct.pack_into("<Q", mem, pte + 8 * idx(v4k, 12), 0x5000 | 0x63 | sme)
    info = parse_vmcoreinfo(
        f"NUMBER(phys_base)=0\nSYMBOL(init_top_pgt)={0xFFFFFFFF80000000 + pgd:x}\n"
        f"NUMBER(sme_mask)={sme}\n".encode())
    km = KernelMemory(lambda a, n: bytes(mem[a : a + n]), info)
    assert km.to_phys(v4k + 0x10) == 0x5010
    assert km.to_phys(v2m + 0x1234) == 0x401234
    assert km.to_phys(v1g + 0x123456) == 0x40123456
    assert km.to_phys(0xFFFFFFFF80001000) == 0x1000  # kernel text: direct
    with pytest.raises(AddressNotMapped) as e:
        km.to_phys(0xFFFF999000000000)
    assert e.value.offset == 0xFFFF999000000000


def test_five_level_walk() -> None:
    mem = bytearray(0x10000)
    v = 0xFF11000000003000
    tables = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000]
    for level, shift in enumerate([48, 39, 30, 21, 12]):
        target = tables[level + 1] if level < 4 else 0x9000
        struct.pack_into("<Q", mem, tables[level] + 8 * ((v >> shift) & 0x1FF), target | 1)
    info = parse_vmcoreinfo(
        f"NUMBER(phys_base)=0\nSYMBOL(init_top_pgt)={0xFFFFFFFF80001000:x}\n"
        "NUMBER(pgtable_l5_enabled)=1\n".encode())
    km = KernelMemory(lambda a, n: bytes(mem[a : a + n]), info)
    assert km.to_phys(v + 5) == 0x9005


def test_flattened_later_records_win() -> None:
    image = bytes(range(256)) * 64
    flat = kit.flatten(image, chunk=1000, rewrite={100: b"A" * 50, 990: b"B" * 20})
    idx = build_index(BytesSource(flat))
    from vmcore.formats.flattened import FlattenedSource

    got = FlattenedSource(BytesSource(flat), idx).read(0, len(image))
    want = bytearray(image)
    want[100:150] = b"A" * 50
    want[990:1010] = b"B" * 20
    assert got == bytes(want)
    b = FlatIndexBuilder()
    for i in range(0, len(flat), 333):
        b.feed(flat[i : i + 333])
    assert b.finish() == idx


def test_flattened_without_end_marker_is_incomplete() -> None:
    flat = kit.flatten(b"x" * 10000, end_marker=False)
    assert not build_index(BytesSource(flat)).complete
    b = FlatIndexBuilder()
    b.feed(flat[:-100])  # cut inside the last payload
    idx = b.finish()
    assert not idx.complete
    assert idx.logical_size <= 10000


def test_kdump_excluded_and_header() -> None:
    data = _kdump_with_log(RECORDS)
    d = open_dump(BytesSource(data))
    assert d.format == "kdump" and d.compression == "zlib"
    with pytest.raises(PageExcluded):
        d.read_phys(0x3F000, 8)  # a zero, never-written page outside the bitmap
    h = read_header(BytesSource(data))
    assert (h.kernel_release, h.build_id, h.crash_time) == (
        "6.1.0-test", "0123456789abcdef0123456789abcdef01234567", 1_700_000_000)


def test_elf_filtered_reads_zeros() -> None:
    data = kit.elf_core({0x100000: b"\x11" * 4096}, b"", memsz_extra=4096)
    d = open_dump(BytesSource(data))
    assert d.read_phys(0x100FF0, 32) == b"\x11" * 16 + b"\0" * 16
    with pytest.raises(PageExcluded):
        d.read_phys(0x200000, 1)


@pytest.mark.parametrize(("head", "exc"), [
    (b"\0" * 64, UnsupportedDump),
    (b"\x7fELF\x01\x01" + b"\0" * 58, UnsupportedDump),
    (b"KDUMP   " + b"\0" * 56, TruncatedDump),
    (b"KDUMP   " + b"\0" * 4088, CorruptDump),
])
def test_bad_heads(head: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        open_dump(BytesSource(head))


def test_detect() -> None:
    assert detect(BytesSource(kit.flatten(b"KDUMP   "))) == "kdump-flattened"


@pytest.mark.parametrize(("version", "has_vmcoreinfo", "has_notes"), [
    (1, False, False), (2, False, False), (3, True, False), (4, True, True), (5, True, True),
    (6, True, True),
])
def test_header_versions(version: int, has_vmcoreinfo: bool, has_notes: bool) -> None:
    """Fields exist from the version that introduced them (makedumpfile diskdump_mod.h)."""
    mem, info = kit.printk_memory(RECORDS)
    data = kit.kdump(_pages(mem), info, version=version, notes=kit.prstatus(3, 0x1234),
                     max_mapnr=len(mem) // 4096)
    d = open_dump(BytesSource(data))
    assert (d.vmcoreinfo_blob is not None) == has_vmcoreinfo
    assert bool(d.notes) == has_notes
    if has_vmcoreinfo:
        assert format_dmesg(read_log(d)[1].records) == WANT
    else:
        with pytest.raises(CorruptDump, match="no VMCOREINFO"):
            read_log(d)


def test_incomplete_dump_missing_pages() -> None:
    mem, info = kit.printk_memory(RECORDS)
    data = bytearray(kit.kdump(_pages(mem), info, max_mapnr=len(mem) // 4096))
    struct.pack_into("<i", data, 424, 0x1 | 0x8)  # zlib + DUMP_DH_COMPRESSED_INCOMPLETE
    d = open_dump(BytesSource(bytes(data)))
    assert d.kdump_header is not None and d.kdump_header.incomplete
    h = d.kdump_header
    desc0 = (1 + h.sub_hdr_size + h.bitmap_blocks) * h.block_size
    first_data = struct.unpack_from("<q", data, desc0)[0]
    for at in range(desc0, first_data, 24):  # makedumpfile ran out of space: offset 0
        struct.pack_into("<q", data, at, 0)
    d = open_dump(BytesSource(bytes(data)))
    with pytest.raises(PageExcluded, match="incomplete"):
        d.read_phys(0x1000, 8)


def test_legacy_printk_is_unsupported() -> None:
    vm = parse_vmcoreinfo(b"SYMBOL(log_buf)=ffffffff82000000\nNUMBER(phys_base)=0\n")
    km = KernelMemory(lambda a, n: bytes(n), vm)
    with pytest.raises(UnsupportedDump, match="legacy printk buffer"):
        read_printk(km, vm)
