"""Deep analysis of real Debian arm64 dumps with the -dbg vmlinux's symbol pack, against the
oracles of the fixture factory (``arm64_case.py``): the frames read from memory are drgn's
stack (drgn unwinds with the vmlinux's DWARF CFI; its ``pcs:`` line lists the addresses of its
real, not inlined, frames), the task, modules and last unloaded module are drgn's and the
log's, the exception frame is the oops's ``pc :``, and the findings are the scenario's.

Also the stack walk on synthetic stacks: exception records, the IRQ-to-task switch, and the
bounds that stop a walk over corrupt records."""

from __future__ import annotations

import re
import struct
from typing import cast

import pytest

from vmcore.analyze import analyze
from vmcore.arm64 import Arm64Memory
from vmcore.arm64_deep import Arm64Context
from vmcore.arm64_stack import MAX_FRAMES, arm64_unwind
from vmcore.errors import PageExcluded
from vmcore.source import LocalFileSource
from vmcore.symbols import KernelSymbols
from vmcore.x86_64 import KernelMemory

from .conftest import Case, real_cases
from .test_arm64 import _info
from .test_deep_real import _pack, _report

FINDING = {"uau": "use-after-module-unload", "null": "null-pointer-dereference",
           "bugon": "bug", "warn": "warning"}


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_frames_equal_drgn(case: Case) -> None:
    r = _report(case)
    mem = r.memory
    assert mem is not None, r.notes
    assert r.symbols == f"pack {case.manifest['build_id']}"
    assert mem.unwind_complete and not mem.partial and not r.partial, (mem.notes, r.notes)
    drgn = case.oracle("drgn_bt") or ""
    pcs = re.search(r"^pcs: (.*)$", drgn, re.M)
    if pcs is None:
        pytest.skip("drgn oracle without its pcs: line (made before it was added)")
    assert [f.address for f in mem.frames] == [int(p.rstrip("*"), 16)
                                                for p in pcs.group(1).split()]
    # vmlinux names, apart from GCC's clone suffixes, are drgn's (which adds inlined frames;
    # it has no module debug info and prints module frames as addresses)
    theirs = iter(re.findall(r"^#\d+\s+([\w.]+)", drgn, re.M))
    ours = [f.function.split(".")[0] for f in mem.frames if f.function and not f.module]
    assert all(any(t.split(".")[0] == o for t in theirs) for o in ours), (ours, drgn)
    # drgn marks an interrupted frame it found by CFI (an IRQ's): ours is an exception frame
    marked = [i for i, p in enumerate(pcs.group(1).split()) if i and p.endswith("*")]
    assert all(mem.frames[i].exception for i in marked)
    # a timer interrupt caught by the dump starts on the IRQ stack; the rest is the task's
    where = [f.context for f in mem.frames]
    assert where == ["irq"] * where.count("irq") + ["task"] * where.count("task")


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_task_modules_and_pc_equal_oracles(case: Case) -> None:
    m = case.manifest
    r = _report(case)
    mem = r.memory
    assert mem is not None
    t = m["crashed_task"]
    assert (mem.pid, mem.comm, mem.cpu, mem.state) == (t["pid"], t["comm"], t["cpu"], "RU")
    assert sorted(x.name for x in mem.modules) == m["loaded_modules"] and mem.modules_complete
    assert mem.last_unloaded == (m["last_unloaded"] or "")
    assert mem.tasks is not None and mem.tasks > 10 and mem.tasks_complete
    if m["rip_line"] is None:  # sysrq: a direct panic(), no register dump to compare
        return
    # the oops's exception: the task-stack exception frame (an IRQ's may be above it)
    pc = [f for f in mem.frames if f.exception and f.context == "task"][-1]
    if m["rip_symbol"] == "unresolved":  # freed module text
        assert (pc.function, pc.module) == (None, None)
        assert m["rip_line"] == f"pc : {pc.address:#x}"
    else:
        assert (pc.function, pc.module) == (m["rip_symbol"], m["rip_module"])
        assert m["rip_line"].startswith(f"pc : {pc.function}+{pc.offset:#x}/")


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_findings_from_memory(case: Case) -> None:
    m = case.manifest
    r = _report(case)
    mine = [f for f in r.findings if f.source == "memory"]
    want = FINDING.get(m["scenario"])
    assert [f.kind for f in mine] == ([want] if want else [])
    if m["scenario"] == "uau":
        assert mine[0].module == m["last_unloaded"]
    elif want:
        assert mine[0].module == m["rip_module"]
    if m["scenario"] in ("bugon", "warn"):
        assert any(e.startswith("the bug table in memory records") for e in mine[0].evidence)


@pytest.mark.parametrize("case", [p for p in real_cases(arch="arm64") if p.values[0] is None  # type: ignore[attr-defined]
                                  or "__start_rodata" in p.values[0].manifest["producer"]])  # type: ignore[attr-defined]
def test_without_symbols_the_report_says_why(case: Case) -> None:
    # A dump with its read-only data erased has no kallsyms at all: makedumpfile overwrote it
    # with "X" bytes (kallsyms_num_syms reads 0x58585858), so the report stays log-based,
    # saying so. (The dumps that keep it: test_arm64_dump_symbols.py.)
    with LocalFileSource(case.dump) as src:
        r = analyze(src, dump_symbols=True).report
    assert r.memory is None and not r.symbolized
    assert any(n.startswith("symbols: none from the dump") and "kallsyms_num_syms 1482184792"
               in n for n in r.notes), r.notes


# -- synthetic stacks ------------------------------------------------------------------------

TASK = 0xFFFF000002000000  # linear map: PHYS_OFFSET + 0x2000000
PHYS = 0x42000000
IRQ = TASK + 0x4000
SF = 0x130  # pt_regs.stackframe (6.1)
TEXT = 0xFFFF800008010000


class _Pack:
    types: dict[str, object] = {}

    def member_offset(self, struct_name: str, path: str) -> int | None:
        return SF if (struct_name, path) == ("pt_regs", "stackframe") else None


def _ctx(words: dict[int, int]) -> Arm64Context:
    buf = bytearray(0x8000)
    for at, v in words.items():
        struct.pack_into("<Q", buf, at - TASK, v)

    def read(a: int, n: int) -> bytes:
        if not PHYS <= a < PHYS + len(buf):
            raise PageExcluded("not in the dump", offset=a, space="phys")
        return bytes(buf[a - PHYS : a - PHYS + n])

    mem = Arm64Memory(read, _info())
    return Arm64Context(cast(KernelMemory, mem), cast(KernelSymbols, _Pack()), 0)


STACKS = {"task": (TASK, TASK + 0x4000), "irq": (IRQ, IRQ + 0x4000)}


def _walk(words: dict[int, int], fp: int) -> tuple[list[tuple[int, bool, str]], bool, tuple]:
    u = arm64_unwind(_ctx(words), [], {"pc": TEXT, "sp": fp, "x29": fp}, STACKS, lambda a: a)
    return [(f.address, f.exception, f.context) for f in u.frames], u.complete, u.notes


def test_irq_record_then_exception_then_final_record() -> None:
    regs = TASK + 0x3000  # a pt_regs on the task stack; its stackframe is a record
    rec = regs + SF
    words = {IRQ + 0x100: IRQ + 0x200, IRQ + 0x108: TEXT + 0x10,  # irq frame
             IRQ + 0x200: rec, IRQ + 0x208: TEXT + 0x20,  # to the task stack
             rec: TASK + 0x3800, rec + 8: TEXT + 0x30,  # {interrupted x29, interrupted pc}
             regs + 29 * 8: TASK + 0x3800, regs + 32 * 8: TEXT + 0x30,
             TASK + 0x3800: TASK + 0x3F00, TASK + 0x3808: TEXT + 0x40}  # then {0, 0}
    frames, complete, notes = _walk(words, IRQ + 0x100)
    assert frames == [(TEXT, False, "irq"), (TEXT + 0x10, False, "irq"),
                      (TEXT + 0x20, False, "irq"), (TEXT + 0x30, True, "task"),
                      (TEXT + 0x40, False, "task")]
    assert complete and notes == ()


@pytest.mark.parametrize(("words", "start", "says"), [
    ({TASK + 0x100: TASK + 0x100, TASK + 0x108: TEXT}, TASK + 0x100, "went backwards"),
    ({TASK + 0x100: IRQ + 0x100, TASK + 0x108: TEXT,  # task -> irq -> task: never back
      IRQ + 0x100: TASK + 0x200, IRQ + 0x108: TEXT}, TASK + 0x100, "went backwards"),
    ({}, TASK + 0x108, "misaligned"),
    ({TASK + 0x100: 0xFFFF000009000000, TASK + 0x108: TEXT}, TASK + 0x100, "outside"),
])
def test_bad_chains_stop_with_a_note(words: dict[int, int], start: int, says: str) -> None:
    _frames, complete, notes = _walk(words, start)
    assert not complete and says in notes[0]


def test_walk_is_bounded() -> None:
    words = {}
    for i in range(MAX_FRAMES + 10):
        words[TASK + 0x10 * i] = TASK + 0x10 * (i + 1)
        words[TASK + 0x10 * i + 8] = TEXT + i
    frames, complete, notes = _walk(words, TASK)
    assert len(frames) == MAX_FRAMES and not complete and "stopped after" in notes[0]


@pytest.mark.parametrize("seed", range(20))
def test_random_stacks_end_with_a_note_or_the_chain_end(seed: int) -> None:
    # hostile or corrupt stacks: random words, records pointing around both stacks
    import random

    rng = random.Random(seed)
    words = {}
    for at in range(TASK, TASK + 0x8000, 8):
        r = rng.random()
        words[at] = (rng.randrange(TASK, TASK + 0x8000) & ~0xF if r < 0.5 else
                     TEXT + rng.randrange(1 << 20) if r < 0.9 else rng.getrandbits(64))
    frames, complete, notes = _walk(words, rng.randrange(TASK, TASK + 0x8000) & ~0xF)
    assert 1 <= len(frames) <= MAX_FRAMES
    assert complete or len(notes) == 1


@pytest.mark.parametrize("garbage", [True, False])
def test_analysis_over_garbage_or_unmapped_memory_is_partial(garbage: bool) -> None:
    """The real 6.1 arm64 pack over memory that is all garbage (every byte a hash of its
    address) or all unmapped: bounded, flagged partial with notes, nothing raises."""
    import hashlib

    from vmcore.arm64 import arm64_layout
    from vmcore.arm64_deep import analyze_memory_arm64
    from vmcore.notes import PrStatus

    pack = _pack("6.1.0-56-cloud-arm64")
    info = _info(BUILD_ID=f"BUILD-ID={pack.build_id}")

    class Garbage:
        layout = arm64_layout(info)

        def read(self, vaddr: int, length: int) -> bytes:
            if not garbage:
                raise PageExcluded("not in the dump", offset=vaddr, space="virt")
            return b"".join(hashlib.blake2b(a.to_bytes(8, "little"), digest_size=1).digest()
                            for a in range(vaddr, vaddr + length))

    regs = {f"x{i}": 0 for i in range(31)} | {"sp": TASK + 0x3F00, "pc": TEXT, "x29": TASK,
                                               "pstate": 0}
    ma = analyze_memory_arm64(cast(Arm64Memory, Garbage()), info, pack, [PrStatus(0, 1, regs)],
                              oops_cpu=0, klass="page_fault", fault_address=0)
    assert ma.partial and ma.notes
    assert len(ma.frames) <= MAX_FRAMES and len(ma.tasks) <= 100_000
