"""Bad input is normal input: truncations, bit flips and lying fields end in a typed error
naming the offset, or a report flagged partial; never a hang or unbounded memory."""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmcore.analyze import analyze
from vmcore.errors import AnalyzerError, CorruptDump
from vmcore.formats import open_dump
from vmcore.formats.flattened import FlattenedSource, build_index
from vmcore.logread import read_log
from vmcore.printk import format_dmesg
from vmcore.source import BytesSource

from . import dumpkit as kit
from .conftest import CASES

RECORDS = [(b"line %d of the log" % i, i * 1000, i) for i in range(40)]


def _synthetic() -> bytes:
    mem, info = kit.printk_memory(RECORDS, size_bits=12, count_bits=6)
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)
             if any(mem[i : i + 4096])}
    return kit.kdump(pages, info, max_mapnr=len(mem) // 4096)


class _View:
    """The first ``size`` bytes of ``data`` without copying it."""

    def __init__(self, data: bytes, size: int):
        self._data, self.size, self.name = memoryview(data), size, f"<first {size} bytes>"

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._data[offset : min(offset + length, self.size)])


def _outcome(src: object, want_log: bytes | None) -> str:
    """Run the analysis; check the contract; return ``error``/``partial``/``ok``."""
    try:
        a = analyze(src)  # type: ignore[arg-type]
    except AnalyzerError as exc:
        assert exc.offset is not None or "VMCOREINFO" in str(exc) or "format" in str(exc), exc
        return "error"
    if a.report.partial:
        return "partial"
    if want_log is not None and a.log is not None:
        # not flagged partial: then the log must be right, not silently wrong
        assert format_dmesg(a.log.records) == want_log
    return "ok"


def _real_kdump() -> tuple[bytes, bytes | None]:
    """A real kdump-compressed dump and its makedumpfile log. The committed dumps are
    flattened (kdump-tools' default): one is reassembled in memory, as ``makedumpfile -R``
    would, so a fresh checkout tests real dump structure too."""
    flat = None
    for c in CASES:
        fmt = c.manifest.get("format")
        if fmt == "kdump":
            return c.dump.read_bytes(), c.oracle_bytes("dmesg")
        if fmt == "kdump-flattened" and flat is None:
            flat = c
    if flat is None:
        return b"", None
    src = BytesSource(flat.dump.read_bytes())
    view = FlattenedSource(src, build_index(src))
    return view.read(0, view.size), flat.oracle_bytes("dmesg")


def _real() -> tuple[bytes, bytes | None]:
    if not _REAL[0]:
        pytest.skip("no real kdump or flattened fixture")
    return _REAL


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_truncated_at_every_4k_boundary(kind: str) -> None:
    if kind == "real":
        data, want = _real()
    else:
        data = _synthetic()
        want = format_dmesg(read_log(open_dump(BytesSource(data)))[1].records)
    seen = {"error": 0, "partial": 0, "ok": 0}
    start = time.monotonic()
    for cut in range(0, len(data), 4096):
        seen[_outcome(_View(data, cut), want)] += 1
    assert _outcome(_View(data, len(data)), want) == "ok"
    assert seen["error"] > 0
    assert time.monotonic() - start < 120


def _patched(data: bytes, at: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


@pytest.mark.parametrize(("what", "at", "fmt", "value", "needle"), [
    ("huge bitmap_blocks", 436, "<i", 0x7FFFFFF0, "bitmaps end"),
    ("huge block_size", 428, "<i", 1 << 30, "block_size"),
    ("max_mapnr beyond the bitmaps", 4096 + 96, "<Q", 1 << 40, "max_mapnr"),
    ("vmcoreinfo outside the sub-header", 4096 + 32, "<Q", 1 << 40, "sub-header range"),
    ("negative nr_cpus", 460, "<i", -5, "nr_cpus"),
])
def test_lying_header_fields(what: str, at: int, fmt: str, value: int, needle: str) -> None:
    data = _patched(_synthetic(), at, fmt, value)
    with pytest.raises(CorruptDump, match=needle) as e:
        analyze(BytesSource(data))
    assert e.value.offset is not None


@pytest.mark.parametrize(("line", "lie", "needle"), [
    # found by fuzzing real dumps: an offset past the struct was a bare struct.error
    ("OFFSET(prb_desc_ring.count_bits)=0", "OFFSET(prb_desc_ring.count_bits)=9000",
     "prb_desc_ring.count_bits at byte 9000 of the 88-byte printk_ringbuffer"),
    ("OFFSET(prb_desc_ring.tail_id)=32", "OFFSET(prb_desc_ring.tail_id)=-40",
     "prb_desc_ring.tail_id at byte -40"),
    ("OFFSET(prb_data_ring.data)=8", "OFFSET(prb_data_ring.data)=86",
     "prb_data_ring.data at byte 134"),
    # a size read as-is would be a read (and an allocation) of that many bytes
    ("SIZE(printk_ringbuffer)=88", "SIZE(printk_ringbuffer)=99999999999",
     r"SIZE\(printk_ringbuffer\)=99999999999 is out of range"),
    ("SIZE(prb_desc)=24", "SIZE(prb_desc)=0", r"SIZE\(prb_desc\)=0 is out of range"),
])
def test_lying_vmcoreinfo_ring_layout(line: str, lie: str, needle: str) -> None:
    mem, info = kit.printk_memory(RECORDS, size_bits=12, count_bits=6)
    assert line.encode() in info
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
    data = kit.kdump(pages, info.replace(line.encode(), lie.encode()),
                     max_mapnr=len(mem) // 4096)
    with pytest.raises(CorruptDump, match=needle):
        read_log(open_dump(BytesSource(data)))
    r = analyze(BytesSource(data)).report  # the report keeps what else the dump says
    assert r.partial
    assert any("VMCOREINFO" in n for n in r.notes)


@pytest.mark.parametrize("seconds", [10**12, -5, (1 << 63) - 1])
def test_lying_header_timestamp_is_no_crash_time(tmp_path: Path, seconds: int) -> None:
    """A header time no calendar holds is dropped, not passed on: the agent's facts, the
    summary and the store all turn crash_time into a date (year 33658 raised ValueError in
    the agent, which then stopped on every restart)."""
    from agent.facts import read_facts
    from crashfleet.commands.analyze import summary
    from vmcore.analyze import read_header

    data = _patched(_synthetic(), 408, "<q", seconds)  # disk_dump_header.timestamp.tv_sec
    assert read_header(BytesSource(data)).crash_time is None
    report = analyze(BytesSource(data)).report
    assert report.crash_time is None
    assert "crash time" not in summary(report)
    dump = tmp_path / "vmcore"
    dump.write_bytes(data)
    facts = read_facts(dump, True)
    assert facts.format == "kdump-compressed" and facts.crash_time is None
    assert facts.kernel_log is not None


def test_descriptor_offset_past_end() -> None:
    data = _synthetic()
    d = open_dump(BytesSource(data))
    assert d.kdump_header is not None
    h = d.kdump_header
    desc0 = (1 + h.sub_hdr_size + h.bitmap_blocks) * h.block_size
    bad = bytearray(data)
    data_start = struct.unpack_from("<q", data, desc0)[0]  # page data follows the descriptors
    for at in range(desc0, data_start, 24):  # every descriptor points past the end
        struct.pack_into("<q", bad, at, len(data) + 4096)
    r = analyze(BytesSource(bytes(bad))).report
    assert r.partial
    assert any("outside the dump" in n and "offset 0x" in n for n in r.notes)


def test_ring_ids_that_never_reach_the_head() -> None:
    mem, info = kit.printk_memory(RECORDS, size_bits=12, count_bits=6)
    # tail_id far behind head_id: a naive walk would take 2**61 steps
    struct.pack_into("<Q", mem, 0x1000 + 32, 5)
    struct.pack_into("<Q", mem, 0x1000 + 24, 1 << 61)
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
    start = time.monotonic()
    r = analyze(BytesSource(kit.kdump(pages, info, max_mapnr=len(mem) // 4096))).report
    assert time.monotonic() - start < 5
    assert r.partial
    assert any("spans" in n for n in r.notes)


def test_cyclic_page_tables_terminate() -> None:
    mem, info = kit.printk_memory(RECORDS, size_bits=12, count_bits=6)
    pgt = 0x30000
    for i in range(512):  # every entry points back at the table itself
        struct.pack_into("<Q", mem, pgt + 8 * i, pgt | 0x63)
    # the text ring now lives in the direct map, reached only through the cyclic tables
    struct.pack_into("<Q", mem, 0x1000 + 48 + 8, 0xFFFF888000010000)
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
    start = time.monotonic()
    a = analyze(BytesSource(kit.kdump(pages, info, max_mapnr=len(mem) // 4096)))
    assert time.monotonic() - start < 5
    # The walk stops after its four levels: every text read lands on the table page itself,
    # so each record's text is the repeated table entry (the walk went through the cycle and
    # terminated) and the analysis completes.
    assert a.log is not None and a.log.records
    entry = struct.pack("<Q", pgt | 0x63)
    assert all(r.text.startswith(entry) for r in a.log.records)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 70_000), st.integers(0, 7)), min_size=1,
                      max_size=8))
def test_bit_flips_synthetic(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_SYNTH)
    for pos, bit in flips:
        if pos < len(data):
            data[pos] ^= 1 << bit
    _outcome(BytesSource(bytes(data)), None)


@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 24), st.integers(0, 7)), min_size=1,
                      max_size=16))
def test_bit_flips_real(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_real()[0])
    for pos, bit in flips:
        # half the flips land in the structure-heavy first 64 KiB
        p = pos % 65536 if bit & 1 else pos % len(data)
        data[p] ^= 1 << bit
    _outcome(BytesSource(bytes(data)), None)


def test_memory_stays_bounded() -> None:
    data = _REAL[0] or _SYNTH
    bad = bytearray(data)
    struct.pack_into("<i", bad, 436, 0x7FFFFFF0)
    tracemalloc.start()
    try:
        for blob in (bytes(data), bytes(bad)):
            with contextlib.suppress(AnalyzerError):
                analyze(BytesSource(blob))
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20


@given(st.binary(min_size=0, max_size=9000))
@settings(max_examples=200, deadline=1000)
def test_random_bytes(blob: bytes) -> None:
    for head in (b"", b"KDUMP   ", b"makedumpfile\0\0\0\0" + b"\0" * 7 + b"\1", b"\x7fELF\2\1\1"):
        _outcome(BytesSource(head + blob), None)


_SYNTH = _synthetic()
_REAL = _real_kdump()


@settings(max_examples=40, deadline=2000)
@given(cuts=st.lists(st.integers(1, 70_000), max_size=12))
def test_flat_index_any_chunking(cuts: list[int]) -> None:
    """Feeding the flattened stream in any chunking gives the same index as one scan."""
    from vmcore.formats.flattened import FlatIndexBuilder, build_index

    flat = kit.flatten(_SYNTH, chunk=3000, rewrite={5000: b"z" * 100})
    b = FlatIndexBuilder()
    pos = 0
    for c in sorted(set(cuts)):
        b.feed(flat[pos:c])
        pos = max(pos, c)
    b.feed(flat[pos:])
    assert b.finish() == build_index(BytesSource(flat))
