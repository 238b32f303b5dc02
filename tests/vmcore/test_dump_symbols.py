"""Deep analysis with no debug symbols: kallsyms, BTF and ORC read from the dump itself,
against the pack-based analysis of the same dump and the ``crash`` oracles (bt, mod)."""

from __future__ import annotations

import re

import pytest

from signature import compute_signature
from signature.inputs import signature_input
from vmcore.analyze import analyze
from vmcore.pages import Reader
from vmcore.report import SYMBOLS_DUMP, SYMBOLS_NONE, Report
from vmcore.source import LocalFileSource

from .conftest import Case, real_cases
from .test_deep_real import _BT_HEAD, _crash_frames, _report, _same

_OWN: dict[str, Report] = {}


def _own(case: Case) -> Report:
    if case.name not in _OWN:
        with LocalFileSource(case.dump) as src:
            _OWN[case.name] = analyze(src, dump_symbols=True).report
    return _OWN[case.name]


def _kallsyms_cases() -> list[object]:
    return [p for p in real_cases() if p.values[0] is None  # type: ignore[attr-defined]
            or not p.values[0].manifest["kernel_release"].startswith("5.")]  # type: ignore


@pytest.mark.parametrize("case", _kallsyms_cases())
def test_frames_equal_the_pack_and_crash_bt(case: Case) -> None:
    own = _own(case)
    assert own.symbols == SYMBOLS_DUMP and own.symbolized, own.notes
    mem, pack = own.memory, _report(case).memory
    assert mem is not None and pack is not None
    assert mem.matched_by == "dump" and mem.unwind_complete, mem.notes

    def key(fs: tuple) -> list[tuple[object, ...]]:
        return [(f.function, f.offset, f.module, f.address, f.exception, f.reliable, f.context)
                for f in fs]

    assert key(mem.frames) == key(pack.frames)
    bt = case.oracle("crash_bt")
    if bt is None:
        return
    crash = _crash_frames(bt)
    entry = [i for i, f in enumerate(crash) if f[0].startswith("asm_") and not f[2]]
    exc = [i for i, f in enumerate(mem.frames) if f.exception]
    if entry and exc:
        mine = [(f.function, f.module) for f in mem.frames[exc[-1]:] if f.function is not None]
        want = crash[entry[-1] + 1:]
        assert len(mine) == len(want) and all(
            _same(w, o) for w, o in zip(want, mine, strict=True)), (mine, want)


@pytest.mark.parametrize("case", _kallsyms_cases())
def test_modules_and_task_equal_crash(case: Case) -> None:
    mem = _own(case).memory
    assert mem is not None
    text = case.oracle("crash_mod")
    if text is not None:
        want = sorted((int(p[0], 16), p[1], int(p[2], 16), int(p[3]))
                      for p in (ln.split() for ln in text.splitlines()[1:]) if len(p) >= 4)
        assert sorted((m.address, m.name, m.base, m.size) for m in mem.modules) == want
        assert mem.modules_complete
    bt = case.oracle("crash_bt")
    if bt is not None:
        m = _BT_HEAD.match(bt.splitlines()[0])
        assert m
        assert (mem.pid, mem.task_address, mem.cpu, mem.comm) == \
            (int(m.group(1)), int(m.group(2), 16), int(m.group(3)), m.group(4))
    pack = _report(case).memory
    assert pack is not None
    assert (mem.state, mem.tasks, mem.last_unloaded) == \
        (pack.state, pack.tasks, pack.last_unloaded)


@pytest.mark.parametrize("case", _kallsyms_cases())
def test_findings_and_signature_equal_the_pack(case: Case) -> None:
    own, pack = _own(case), _report(case)
    assert [(f.kind, f.module, f.address, f.source) for f in own.findings] == \
        [(f.kind, f.module, f.address, f.source) for f in pack.findings]
    uau = [f for f in own.findings if f.kind == "use-after-module-unload"]
    assert bool(uau) == (case.manifest["scenario"] == "uau")
    assert compute_signature(signature_input(own)).id == \
        compute_signature(signature_input(pack)).id


@pytest.mark.parametrize("case", [p for p in real_cases() if p.values[0] is not None  # type: ignore[attr-defined]
                                  and p.values[0].manifest["kernel_release"].startswith("5.")])  # type: ignore
def test_without_kallsyms_the_log_findings_remain(case: Case) -> None:
    """5.10 exports no kallsyms in VMCOREINFO: the report stays log-based, says so, and keeps
    the findings the log supports, marked as from the log."""
    r = _own(case)
    assert r.symbols == SYMBOLS_NONE and not r.symbolized and r.memory is None
    assert any(re.match(r"symbols: none from the dump \(kallsyms: VMCOREINFO has no", n)
               for n in r.notes), r.notes
    kinds = [f.kind for f in r.findings]
    # by the case's cluster: the timer scenario is a NULL dereference too (in softirq)
    cluster = case.manifest.get("cluster", "")
    want = ["use-after-module-unload"] if cluster.startswith("use-after-unload/") else \
        ["null-pointer-dereference"] if cluster.startswith("null-deref") else []
    assert kinds == want
    assert all(f.source == "log" for f in r.findings)


@pytest.mark.parametrize("case", _kallsyms_cases())
def test_symbolized_json_has_hex_addresses_only(case: Case) -> None:
    import json

    from .test_report_v2 import _ints

    doc = json.loads(_own(case).to_json())
    assert [(p, v) for p, v in _ints(doc) if abs(v) > 2**53] == []
    mem = doc["memory"]
    addrs = [mem["task_address"], mem["kaslr_offset"],
             *(f["address"] for f in mem["frames"]), *(m["base"] for m in mem["modules"])]
    assert all(isinstance(a, str) and re.fullmatch(r"0x[0-9a-f]+", a) for a in addrs)
    assert doc["symbols"] == SYMBOLS_DUMP and mem["matched_by"] == "dump"


@pytest.mark.parametrize("case", _kallsyms_cases())
def test_lookups_in_place_equal_the_full_decode(case: Case) -> None:
    """kallsyms searched where it lies (markers, seqs_of_names, offsets) answers as every
    name decoded does: names to addresses, addresses to symbol, offset, size and kind."""
    from vmcore.formats import open_dump
    from vmcore.vmcoreinfo import parse_vmcoreinfo
    from vmcore.x86_64 import KernelMemory

    with LocalFileSource(case.dump) as src:
        d = open_dump(src)
        info = parse_vmcoreinfo(d.vmcoreinfo_blob or b"")
        hdr = d.kdump_header
        mem = KernelMemory(d.read_phys, info, hdr.phys_base if hdr else None)
        lookups_agree(mem.read, dict(info.symbols), info.kernel_offset or 0, case.name,
                      ("init_task", "_etext", "no_such_symbol"))


def lookups_agree(read: Reader, syms: dict[str, int], slide: int, seed: str,
                  names: tuple[str, ...]) -> None:
    """The in-place kallsyms and the full decode of one dump's tables agree on 300 random
    names and ``names``, and on 400 random addresses and the first and last symbols'."""
    import random

    from vmcore.kallsyms import IndexedKallsyms, Kallsyms, read_kallsyms

    fast = read_kallsyms(read, syms, slide)
    full = read_kallsyms(read, syms, slide, in_place=False)
    assert isinstance(fast, IndexedKallsyms) and isinstance(full, Kallsyms)
    assert (len(fast), fast.layout) == (len(full), full.layout)
    rng = random.Random(seed)
    for name in [*rng.sample(full.names, 300), *names]:
        assert fast.address_of(name) == full.address_of(name), name
    text = (full.address_of("_stext") or 0, full.address_of("_etext") or 1)
    span = (full.addrs[0], full.addrs[-1] + 0x1000)
    probes = [rng.randrange(*r) for r in (text, span) for _ in range(200)]
    for addr in probes + list(full.addrs[:5]) + list(full.addrs[-5:]):
        a, b = fast.lookup(addr), full.lookup(addr)
        assert (a is None) == (b is None), hex(addr)
        if a is not None and b is not None:
            assert (a.name, a.address, a.offset, a.size, a.kind) == \
                (b.name, b.address, b.offset, b.size, b.kind), hex(addr)
