"""Fuzzing the dump's own symbols: mutations of the real 6.1 kallsyms tables and ORC sections
(read from the committed dump) end in a decoded table or a typed error, never another
exception, with bounded reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmcore.errors import AddressNotMapped, BadKallsyms, BadOrc
from vmcore.formats import open_dump
from vmcore.kallsyms import MAX_NAMES_BYTES, read_kallsyms
from vmcore.orc import MemoryOrc
from vmcore.source import LocalFileSource
from vmcore.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from vmcore.x86_64 import KernelMemory

from .conftest import CASES

_FUZZ = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
_TABLES = ("kallsyms_num_syms", "kallsyms_relative_base", "kallsyms_offsets",
           "kallsyms_token_table", "kallsyms_token_index", "kallsyms_names")


@contextlib.contextmanager
def _memory61() -> Iterator[tuple[KernelMemory, VmcoreInfo]]:
    """Kernel memory and VMCOREINFO of the first 6.1 dump fixture."""
    case = next((c for c in CASES if c.manifest["kernel_release"].startswith("6.1")), None)
    if case is None:
        pytest.skip("no 6.1 dump fixture")
    with LocalFileSource(case.dump) as src:
        d = open_dump(src)
        info = parse_vmcoreinfo(d.vmcoreinfo_blob or b"")
        hdr = d.kdump_header
        yield KernelMemory(d.read_phys, info, hdr.phys_base if hdr else None), info


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    """The 6.1 dump's kallsyms tables as one contiguous copy (they sit side by side in
    .rodata), with VMCOREINFO's symbols."""
    with _memory61() as (mem, info):
        lo = min(info.symbols[n] for n in _TABLES)
        hi = max(info.symbols[n] for n in _TABLES) + 4096
        blob = mem.read(lo, hi - lo)
    return {"syms": dict(info.symbols), "slide": info.kernel_offset or 0, "lo": lo,
            "blob": blob}


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1,
                  max_size=8)


@_FUZZ
@given(edits=_EDITS, count=st.integers(0, 2**32 - 1), near_head=st.booleans())
def test_kallsyms_damaged(real: dict[str, Any], edits: list[tuple[int, int]], count: int,
                          near_head: bool) -> None:
    buf = bytearray(real["blob"])
    syms = real["syms"]
    for pos, val in edits:
        # half the runs damage the small tables (count, base, token table and index)
        if near_head:
            pos = syms["kallsyms_token_table"] - real["lo"] + pos % 0x800 \
                if pos & 1 else pos % 16
        buf[pos % len(buf)] = val
    at = syms["kallsyms_num_syms"] - real["lo"]
    buf[at:at + 4] = (count % 40_000 if count & 1 else count).to_bytes(4, "little")
    data = bytes(buf)
    read_bytes = [0]

    def read(addr: int, length: int) -> bytes:
        read_bytes[0] += length
        off = addr - real["lo"]
        if off < 0 or off + length > len(data):
            raise AddressNotMapped("outside the copy", offset=addr, space="virt")
        return data[off:off + length]

    with contextlib.suppress(BadKallsyms):
        ks = read_kallsyms(read, syms, real["slide"])
        assert 0 < len(ks) <= 1_000_000
    assert read_bytes[0] <= 2 * MAX_NAMES_BYTES + 8 * 1_000_000


@_FUZZ
@given(ips=st.binary(max_size=4096), entries=st.binary(max_size=6144),
       probes=st.lists(st.integers(0, 2**64 - 1), max_size=8))
def test_orc_damaged(ips: bytes, entries: bytes, probes: list[int]) -> None:
    try:
        orc = MemoryOrc(ips, 0xFFFFFFFF81000000, entries, None)
    except BadOrc:
        return
    for a in probes:
        e = orc.lookup(a)
        assert e is None or (0 <= e.sp_reg < 16 and 0 <= e.bp_reg < 16)


@pytest.fixture(scope="module")
def real_btf() -> bytes:
    """The 6.1 dump's own BTF (``__start_BTF``..``__stop_BTF``), read from its memory."""
    from vmcore.dumpsyms import symbols_from_dump

    with _memory61() as (mem, info):
        ks = symbols_from_dump(mem.read, info).symbols
        start, stop = ks.address_of("__start_BTF"), ks.address_of("__stop_BTF")
        assert start is not None and stop is not None
        return mem.read(start + (info.kernel_offset or 0), stop - start)


@_FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255),
                                st.sampled_from(["header", "types", "strings"])),
                      min_size=1, max_size=8))
def test_lazy_btf_damaged(real_btf: bytes, edits: list[tuple[int, int, str]]) -> None:
    """Bytes of the header, of the first 64 KiB of types (where the analysis structs lie) or
    of the first 16 KiB of strings changed: a typed error from the header, else every lookup
    the analysis makes returns (damage is a note and a missing or partial type), reading
    only inside the section."""
    from vmcore.btf_lazy import lazy_btf_types
    from vmcore.dumpsyms import ANALYSIS_STRUCTS
    from vmcore.errors import BadBtf

    buf = bytearray(real_btf)
    hdr_len, type_len = 24, int.from_bytes(real_btf[12:16], "little")
    for pos, val, where in edits:
        at = {"header": pos % hdr_len, "types": hdr_len + pos % (64 << 10),
              "strings": hdr_len + type_len + pos % (16 << 10)}[where]
        buf[at] = val
    data = bytes(buf)
    read = [0]

    def fetch(off: int, n: int) -> bytes:
        assert off >= 0 and off + n <= len(data)
        read[0] += n
        return data[off:off + n]

    try:
        types = lazy_btf_types(fetch, len(data), ANALYSIS_STRUCTS)
    except BadBtf:
        return
    for name in ("task_struct", "module", "pt_regs", "mod_kallsyms", "module_layout"):
        layout = types.get(name)
        if layout is not None:
            for m in list(layout.members.values())[:64]:
                assert m.size >= 0 and isinstance(m.type, str)
    assert read[0] <= 2 * len(data)


@_FUZZ
@given(junk=st.binary(max_size=8192), at=st.integers(0, 8192), copies=st.integers(0, 20),
       base=st.integers(0, 2**40).map(lambda v: 0xFFFF800008000000 + 4 * v))
def test_arm64_tables_in_junk(junk: bytes, at: int, copies: int, base: int) -> None:
    """arm64's search for BTF and the export table (Debian arm64 kallsyms names functions
    only) over arbitrary read-only data holding any number of copies of the anchor's name:
    a result or nothing, never an exception; what is found lies inside the data."""
    from vmcore.arm64_dumpsyms import exported_symbols, find_btf

    data = junk[:at] + b"\0init_task\0" * copies + junk[at:]
    got = find_btf(data, base)
    assert got is None or (base <= got[0] < base + len(data) and got[1] > 24)
    exports = exported_symbols(data, base)
    assert all(isinstance(n, str) and 0 <= a < 2**64 for n, a in exports.items())
    assert len(exports) <= len(data) // 12
