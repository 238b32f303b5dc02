"""Memory analysis over inconsistent memory: cyclic lists, garbage pointers, stack pointers
outside any stack, unreadable memory, the wrong pack. Walks stay bounded, results are flagged
partial, nothing raises."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from symbol_cache import SymbolPack
from vmcore.analyze import analyze
from vmcore.deep import PackMismatch, analyze_memory
from vmcore.deep.context import Context
from vmcore.deep.modules import read_modules
from vmcore.deep.unwind import unwind
from vmcore.errors import AddressNotMapped
from vmcore.notes import PrStatus
from vmcore.source import LocalFileSource
from vmcore.vmcoreinfo import VmcoreInfo

from .conftest import CASES
from .test_deep_real import _pack

RELEASE = "6.1.0-56-cloud-amd64"


@pytest.fixture(scope="module")
def pack() -> SymbolPack:
    return _pack(RELEASE)


class FakeMemory:
    """Kernel memory from a dict of u64 words; other addresses are garbage (a hash of the
    address) or unmapped."""

    image_size = 1 << 30

    def __init__(self, words: dict[int, int], garbage: bool):
        self.words = words
        self.garbage = garbage

    def read(self, vaddr: int, length: int) -> bytes:
        out = bytearray()
        for a in range(vaddr, vaddr + length):
            word = a & ~7
            if word in self.words:
                out.append(struct.pack("<Q", self.words[word])[a - word])
            elif self.garbage:
                out.append(hashlib.blake2b(a.to_bytes(8, "little"), digest_size=1).digest()[0])
            else:
                raise AddressNotMapped("fake", offset=vaddr, space="virt")
        return bytes(out)


def _ctx(pack: SymbolPack, words: dict[int, int], garbage: bool = False) -> Context:
    return Context(FakeMemory(words, garbage), pack, 0)  # type: ignore[arg-type]


def test_cyclic_module_list_is_cut_and_flagged(pack: SymbolPack) -> None:
    head = pack.symbols.address_of("modules")
    lo = pack.member_offset("module", "list")
    assert head is not None and lo is not None
    a, b = 0xFFFF888000100000, 0xFFFF888000200000
    ctx = _ctx(pack, {head: a + lo, a + lo: b + lo, b + lo: a + lo}, garbage=True)
    mods, complete = read_modules(ctx)
    assert not complete
    assert len(mods) <= 2
    assert any("cyclic" in n for n in ctx.notes)


def test_stack_pointer_outside_every_stack(pack: SymbolPack) -> None:
    panic = pack.symbols.address_of("panic")
    assert panic is not None
    ctx = _ctx(pack, {}, garbage=True)
    uw = unwind(ctx, [], {"rip": panic + 4, "rsp": 0x1000, "rbp": 0},
                {"task": (0xFFFFC90000000000, 0xFFFFC90000004000)})
    assert not uw.complete
    assert [f.function for f in uw.frames] == ["panic"]
    assert any("outside" in n for n in uw.notes)


def test_garbage_stack_is_bounded(pack: SymbolPack) -> None:
    panic = pack.symbols.address_of("panic")
    assert panic is not None
    lo = 0xFFFFC90000000000
    ctx = _ctx(pack, {}, garbage=True)
    uw = unwind(ctx, [], {"rip": panic + 4, "rsp": lo + 0x100, "rbp": lo + 0x200},
                {"task": (lo, lo + 0x4000)})
    assert not uw.complete and uw.notes
    assert 1 <= len(uw.frames) <= 64


@pytest.mark.parametrize("garbage", [True, False], ids=["garbage", "unmapped"])
def test_whole_analysis_over_bad_memory_is_partial(pack: SymbolPack, garbage: bool) -> None:
    info = VmcoreInfo(build_id=pack.build_id, osrelease=RELEASE, kernel_offset=0)
    cpus = [PrStatus(0, 1, {"rip": 0xFFFFFFFF81000000, "rsp": 0xFFFFC90000001000, "rbp": 0})]
    ma = analyze_memory(FakeMemory({}, garbage), info, pack, cpus,  # type: ignore[arg-type]
                        oops_cpu=0)
    assert ma.partial and ma.notes
    assert len(ma.frames) <= 64


def test_pack_of_another_kernel_is_refused(pack: SymbolPack) -> None:
    info = VmcoreInfo(build_id="11" * 4 + "22" * 4 + "3456789a" * 3, osrelease=RELEASE)
    with pytest.raises(PackMismatch):
        analyze_memory(FakeMemory({}, True), info, pack, [])  # type: ignore[arg-type]


def _a_61_dump() -> Path:
    for c in CASES:
        if c.manifest.get("kernel_release") == RELEASE:
            return c.dump
    pytest.skip("no 6.1 dump fixture")


def test_no_pack_or_wrong_pack_leaves_a_log_based_report() -> None:
    dump = _a_61_dump()

    def failing(_info: VmcoreInfo) -> SymbolPack:
        raise OSError("debuginfod unreachable")

    with LocalFileSource(dump) as src:
        r = analyze(src, symbols=failing).report
    assert not r.symbolized and r.memory is None
    assert all(f.source == "log" for f in r.findings)
    assert any(n.startswith("symbols: no pack") for n in r.notes)
    with LocalFileSource(dump) as src:
        r = analyze(src, symbols=lambda _i: _pack("5.10.0-32-cloud-amd64")).report
    assert not r.symbolized and r.memory is None
    assert any("PackMismatch" in n for n in r.notes)
    assert r.panic.klass != "unknown"  # the log-based part is all there
