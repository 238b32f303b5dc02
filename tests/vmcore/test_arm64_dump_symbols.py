"""Deep analysis of arm64 dumps with no debug symbols: kallsyms of functions only (Debian's arm64
kernels have no CONFIG_KALLSYMS_ALL), the data symbols from the export table, BTF and the
vmalloc areas (:mod:`vmcore.arm64_dumpsyms`), against the pack-based analysis of the same dump
and drgn's stack (``drgn-bt.txt``), and the table parsers on literal bytes."""

from __future__ import annotations

import re
import struct

import pytest

from vmcore.analyze import analyze
from vmcore.arm64_dumpsyms import exported_symbols, find_btf
from vmcore.btf_lazy import lazy_btf_types
from vmcore.kallsyms_index import alias_rank
from vmcore.report import SYMBOLS_DUMP, Report
from vmcore.source import LocalFileSource

from .conftest import Case, real_cases
from .test_deep_real import _pack, _report
from .test_dump_symbols import lookups_agree

_OWN: dict[str, Report] = {}
_KALLSYMS_ALL: dict[str, bool] = {}


def _cases() -> list[object]:
    """arm64 6.x dumps whose read-only data (kallsyms, BTF, the export table) is kept."""
    chosen = [p for p in real_cases(arch="arm64") if p.values[0] is not None  # type: ignore[attr-defined]
              and p.values[0].manifest["kernel_release"].startswith("6.")  # type: ignore[attr-defined]
              and "__start_rodata" not in p.values[0].manifest["producer"]]  # type: ignore[attr-defined]
    return chosen or [pytest.param(None, marks=pytest.mark.skip(reason="no arm64 6.x dumps"))]


def _functions_only(case: Case) -> bool:
    """Whether the dump's kallsyms names functions only (no CONFIG_KALLSYMS_ALL, Debian 6.1)."""
    from vmcore.arm64 import Arm64Memory
    from vmcore.formats import open_dump
    from vmcore.kallsyms import read_kallsyms
    from vmcore.vmcoreinfo import parse_vmcoreinfo

    if case.name not in _KALLSYMS_ALL:
        with LocalFileSource(case.dump) as src:
            d = open_dump(src)
            info = parse_vmcoreinfo(d.vmcoreinfo_blob or b"")
            ks = read_kallsyms(Arm64Memory(d.read_phys, info).read, dict(info.symbols), 0)
            _KALLSYMS_ALL[case.name] = ks.address_of("init_task") is not None
    return not _KALLSYMS_ALL[case.name]


def _own(case: Case) -> Report:
    if case.name not in _OWN:
        with LocalFileSource(case.dump) as src:
            _OWN[case.name] = analyze(src, dump_symbols=True).report
    return _OWN[case.name]


def _key(frames: tuple) -> list[tuple[object, ...]]:
    return [(f.function, f.offset, f.module, f.address, f.exception, f.reliable, f.context)
            for f in frames]


@pytest.mark.parametrize("case", _cases())
def test_frames_equal_the_pack_and_drgn(case: Case) -> None:
    own = _own(case)
    assert own.symbols == SYMBOLS_DUMP and own.symbolized, own.notes
    mem, pack = own.memory, _report(case).memory
    assert mem is not None and pack is not None
    assert mem.matched_by == "dump" and mem.unwind_complete, mem.notes
    assert _key(mem.frames) == _key(pack.frames)
    drgn = case.oracle("drgn_bt") or ""
    pcs = re.search(r"^pcs: (.*)$", drgn, re.M)
    assert pcs is not None, "drgn oracle without its pcs: line"
    assert [f.address for f in mem.frames] == [int(p.rstrip("*"), 16) for p in pcs.group(1).split()]
    # from the oops's exception frame down (sysrq: a direct panic() has none), every frame is
    # drgn's, in order: vmlinux ones by name (drgn adds inlined frames and GCC's clone
    # suffixes), module and freed-text ones by address (drgn has no module debug info)
    exc = [i for i, f in enumerate(mem.frames) if f.exception and f.context == "task"]
    ours = [f.function.split(".")[0] if f.function and not f.module else f"{f.address:#x}"
            for f in mem.frames[exc[-1] if exc else 0:]]
    theirs = iter(t.split(".")[0] for t in re.findall(r"^#\d+\s+([\w.]+)", drgn, re.M))
    assert all(any(t == o for t in theirs) for o in ours), (ours, drgn)


@pytest.mark.parametrize("case", _cases())
def test_task_and_modules_equal_the_manifest_and_the_pack(case: Case) -> None:
    m = case.manifest
    mem, pack = _own(case).memory, _report(case).memory
    assert mem is not None and pack is not None
    t = m["crashed_task"]
    assert (mem.pid, mem.comm, mem.cpu, mem.state) == (t["pid"], t["comm"], t["cpu"], "RU")
    assert (mem.task_address, mem.tasks, mem.tasks_complete) == \
        (pack.task_address, pack.tasks, pack.tasks_complete)
    assert sorted(x.name for x in mem.modules) == m["loaded_modules"] and mem.modules_complete
    assert [(x.address, x.name, x.base, x.size) for x in mem.modules] == \
        [(x.address, x.name, x.base, x.size) for x in pack.modules]


@pytest.mark.parametrize("case", _cases())
def test_findings_equal_the_pack_but_the_last_unloaded_module(case: Case) -> None:
    """With kallsyms of functions only, no table in memory names ``last_unloaded_module`` (a
    static): the analysis says so, and the use-after-unload finding comes from the log, at the
    address memory unwound to."""
    own, pack = _own(case), _report(case)
    assert own.memory is not None and pack.memory is not None
    if not _functions_only(case):
        assert own.memory.last_unloaded == pack.memory.last_unloaded
        assert [(f.kind, f.module, f.address, f.source) for f in own.findings] == \
            [(f.kind, f.module, f.address, f.source) for f in pack.findings]
        return
    assert own.memory.last_unloaded is None
    assert any("last_unloaded_module" in n for n in own.notes), own.notes
    mine = [(f.kind, f.module, f.address) for f in own.findings if f.source == "memory"]
    want = [(f.kind, f.module, f.address) for f in pack.findings if f.source == "memory"]
    assert mine == [f for f in want if f[0] != "use-after-module-unload"]
    uau = [f for f in own.findings if f.kind == "use-after-module-unload"]
    assert bool(uau) == (case.manifest["scenario"] == "uau")
    if uau:
        exc = [f for f in own.memory.frames if f.exception and f.context == "task"][-1]
        assert (uau[0].module, uau[0].address, uau[0].source) == \
            (case.manifest["last_unloaded"], exc.address, "log")


@pytest.mark.parametrize("case", _cases())
def test_data_symbols_are_the_packs_relocated(case: Case) -> None:
    """Every data symbol found outside kallsyms is where the -dbg vmlinux puts it, moved by
    the KASLR slide; kallsyms itself has functions only."""
    from vmcore.arm64 import Arm64Memory
    from vmcore.arm64_deep import dump_symbols_arm64
    from vmcore.formats import open_dump
    from vmcore.kallsyms import Kallsyms, read_kallsyms
    from vmcore.vmcoreinfo import parse_vmcoreinfo

    if not _functions_only(case):
        pytest.skip("kallsyms has the data symbols (CONFIG_KALLSYMS_ALL)")
    pack = _pack(case.manifest["kernel_release"])
    with LocalFileSource(case.dump) as src:
        d = open_dump(src)
        info = parse_vmcoreinfo(d.vmcoreinfo_blob or b"")
        mem = Arm64Memory(d.read_phys, info)
        ks = read_kallsyms(mem.read, dict(info.symbols), 0, in_place=False)
        assert isinstance(ks, Kallsyms) and set(ks.kinds) <= set("TtWwD")  # and _etext: D
        own = dump_symbols_arm64(mem, info)
        slide = info.kernel_offset or 0
        for name in ("init_task", "__per_cpu_offset", "nr_cpu_ids", "__entry_task",
                     "irq_stack_ptr", "modules", "_end", "__start_BTF", "__stop_BTF"):
            link = pack.symbols.address_of(name)
            assert link is not None and own.symbols.address_of(name) == link + slide, name


@pytest.mark.parametrize("case", _cases())
def test_lookups_in_place_equal_the_full_decode(case: Case) -> None:
    from vmcore.arm64 import Arm64Memory
    from vmcore.formats import open_dump
    from vmcore.vmcoreinfo import parse_vmcoreinfo

    with LocalFileSource(case.dump) as src:
        d = open_dump(src)
        info = parse_vmcoreinfo(d.vmcoreinfo_blob or b"")
        lookups_agree(Arm64Memory(d.read_phys, info).read, dict(info.symbols), 0, case.name,
                      ("_stext", "_etext", "no_such_symbol"))


# -- the tables on literal bytes -------------------------------------------------------------
@pytest.mark.parametrize(("better", "worse"), [
    (("t", "gic_handle_irq"), ("T", "_stext")),  # arm64 6.1: the first function of .text
    (("T", "asm_exc_page_fault"), ("T", "__irqentry_text_start")),
    (("t", "f"), ("T", "__start_foo")),
    (("T", "f"), ("t", "f")),
    (("t", "f"), ("W", "f")),
    (("W", "f"), ("w", "f")),
])
def test_functions_win_over_section_bounds_then_global_over_local(
        better: tuple[str, str], worse: tuple[str, str]) -> None:
    assert alias_rank(*better) < alias_rank(*worse)


def _btf_header(type_len: int, str_len: int, str_off: int | None = None) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, type_len,
                       type_len if str_off is None else str_off, str_len)


def test_btf_is_found_at_its_aligned_header() -> None:
    base = 0xFFFF800008E08700
    bad = _btf_header(8, 4, str_off=4)  # strings inside the types: not what pahole writes
    data = b"\x9f\xeb\x01\x00" + b"\0" * 6 + bad + b"\0" * 22 + _btf_header(16, 8) + bytes(24)
    at = data.rindex(b"\x9f\xeb")
    assert find_btf(data, base) == (base + at, 24 + 16 + 8)
    assert find_btf(data, base + 1) is None  # the header is not 4-aligned there
    assert find_btf(b"\0" * 64, base) is None


def _btf(types: list[bytes], names: list[str]) -> bytes:
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    section = b"".join(types)
    return _btf_header(len(section), len(strings)) + section + strings


def _name(names: list[str], n: str) -> int:
    return 1 + sum(len(x) + 1 for x in names[:names.index(n)])


def test_percpu_offsets_from_the_datasec() -> None:
    names = ["int", "__entry_task", "irq_stack_ptr", "jiffies", ".data..percpu", ".data"]
    off = lambda n: _name(names, n)  # noqa: E731
    types = [
        struct.pack("<IIII", off("int"), 1 << 24, 4, 32),  # 1: INT
        struct.pack("<IIII", off("__entry_task"), 14 << 24, 1, 1),  # 2: VAR
        struct.pack("<IIII", off("irq_stack_ptr"), 14 << 24, 1, 1),  # 3: VAR
        struct.pack("<IIII", off("jiffies"), 14 << 24, 1, 1),  # 4: VAR
        struct.pack("<III", off(".data..percpu"), 15 << 24 | 2, 0x14F68)  # 5: DATASEC
        + struct.pack("<III", 2, 0x2C8, 8) + struct.pack("<III", 3, 0x50, 8),
        struct.pack("<III", off(".data"), 15 << 24 | 1, 0x1000)  # 6: DATASEC
        + struct.pack("<III", 4, 0x10, 8),
    ]
    assert _datasec(_btf(types, names)) == ({"__entry_task": 0x2C8, "irq_stack_ptr": 0x50}, ())
    assert _datasec(_btf(types[:4], names)) == ({}, ())
    got, notes = _datasec(_btf([struct.pack("<III", 0, 31 << 24, 0)], names))
    assert got == {} and any("unknown kind 31" in n for n in notes)
    got, notes = _datasec(_btf([struct.pack("<III", 0, 4 << 24 | 5, 8)], names))
    assert got == {} and any("overruns" in n for n in notes)


def _datasec(data: bytes) -> tuple[dict[str, int], tuple[str, ...]]:
    types = lazy_btf_types(lambda off, n: data[off:off + n], len(data), [])
    return types.datasec(".data..percpu"), types.notes


def _ksymtab(base: int, entries: list[tuple[str, int]], junk: bytes) -> bytes:
    """junk, then struct kernel_symbol entries (place-relative), then the names."""
    table = len(junk)
    strings = table + 12 * len(entries)
    names = b"".join(n.encode() + b"\0" for n, _a in entries)
    out = bytearray(junk)
    at = strings
    for i, (name, addr) in enumerate(entries):
        here = table + 12 * i
        out += struct.pack("<iii", addr - (base + here), at - (here + 4), 0)
        at += len(name) + 1
    return bytes(out + names)


def test_the_export_table_around_the_anchor() -> None:
    base = 0xFFFF800008F24650
    entries = [("__per_cpu_offset", base - 0x100000), ("init_task", base + 0x904630),
               ("nr_cpu_ids", base + 0x8FA4C0), ("printk", base - 0x900000)]
    junk = struct.pack("<iii", 0x7FFFFFF0, -0x7FFFFFF0, 5)  # .pci_fixup: no name there
    data = _ksymtab(base, entries, junk)
    assert exported_symbols(data, base) == dict(entries)
    assert exported_symbols(data, base, anchor="no_such") == {}
    assert exported_symbols(data.replace(b"init_task", b"init_tasx"), base) == {}
