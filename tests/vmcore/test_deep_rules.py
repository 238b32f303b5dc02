"""The pure parts of the memory analysis on literal inputs: ORC entry layouts and the finding
rules."""

from __future__ import annotations

import dataclasses

import pytest

from vmcore.deep.findings import Facts, find
from vmcore.deep.modules import ModuleRecord
from vmcore.deep.tasks import TaskRecord
from vmcore.deep.unwind import MemFrame, _orc
from vmcore.oops_records import CodeLocation

# (flags byte, sp_reg, new layout) -> kind. Old layout (< v6.4): type:2 (CALL 0, REGS 1,
# REGS_PARTIAL 2), end:1 (bit 2). New: type:3 (UNDEFINED 0, END_OF_STACK 1, CALL 2, REGS 3,
# REGS_PARTIAL 4), signal:1 (bit 3). sp_reg 5 = SP, 0 = UNDEFINED.
ORC_CASES = [
    (0x00, 5, False, "call"),
    (0x01, 5, False, "regs"),
    (0x02, 5, False, "regs_partial"),
    (0x04, 0, False, "end"),
    (0x00, 0, False, "undefined"),
    (0x02, 5, True, "call"),
    (0x03, 5, True, "regs"),
    (0x04, 5, True, "regs_partial"),
    (0x0B, 5, True, "regs"),  # signal bit set
    (0x01, 0, True, "end"),
    (0x00, 0, True, "undefined"),
]


@pytest.mark.parametrize(("flags", "sp_reg", "new", "kind"), ORC_CASES)
def test_orc_entry_kinds(flags: int, sp_reg: int, new: bool, kind: str) -> None:
    assert _orc(8, 0, sp_reg, 0, flags, new).kind == kind


TASK = TaskRecord(0xFFFF888000001000, 95, "vdeferio8_1", "RU", 0xFFFFC90000000000)
MOD = ModuleRecord(0xFFFFFFFFC0002000, "qemu_fw_cfg", 0xFFFFFFFFC0000000, 0x5000, "",
                   ((0xFFFFFFFFC0000000, 0xFFFFFFFFC0005000),))
GONE = 0xFFFFFFFFC0100010  # module area, no module
IN_MOD = 0xFFFFFFFFC0000010
KERNEL = 0xFFFFFFFFAE0BFBFA  # kernel image (KASLR: below 0xffffffffc0000000)


def _frame(addr: int, *, exception: bool = False, reliable: bool = True) -> MemFrame:
    return MemFrame(addr, None, None, None, None, reliable, exception, None, "task")


def _facts(frames: list[MemFrame], last: str | None = "vendordeferio", klass: str = "page_fault",
           fault: int | None = None, bug: str | None = None) -> Facts:
    return Facts(tuple(frames), (MOD,), last, TASK, klass, fault, bug, lambda _f: None,
                 0xFFFFFFFFC0000000)


RULE_CASES = [
    ("exception RIP in freed module text", _facts([_frame(KERNEL), _frame(GONE, exception=True)]),
     [("use-after-module-unload", "vendordeferio", GONE)]),
    ("reliable frame in freed module text", _facts([_frame(GONE)]),
     [("use-after-module-unload", "vendordeferio", GONE)]),
    ("unreliable frame only", _facts([_frame(GONE, reliable=False)]), []),
    ("nothing unloaded", _facts([_frame(GONE, exception=True)], last=""), []),
    ("address inside a loaded module", _facts([_frame(IN_MOD, exception=True)]), []),
    ("kernel text", _facts([_frame(KERNEL, exception=True)]), []),
    ("NULL page fault", _facts([_frame(IN_MOD, exception=True)], last="", fault=0x8),
     [("null-pointer-dereference", None, IN_MOD)]),
    ("fault above the NULL page", _facts([_frame(IN_MOD, exception=True)], last="",
                                         fault=0x1000), []),
    ("BUG", _facts([_frame(IN_MOD, exception=True)], last="", klass="kernel_bug",
                   bug="x.c:12"), [("bug", None, IN_MOD)]),
    ("WARN", _facts([_frame(IN_MOD, exception=True)], last="", klass="warning"),
     [("warning", None, IN_MOD)]),
]


@pytest.mark.parametrize(("facts", "want"), [c[1:] for c in RULE_CASES],
                         ids=[c[0] for c in RULE_CASES])
def test_finding_rules(facts: Facts, want: list[tuple[str, str | None, int]]) -> None:
    notes: list[str] = []
    got = find(facts, notes)
    assert [(f.kind, f.module, f.address) for f in got] == want
    assert all(f.evidence and f.thread == "vdeferio8_1 (pid 95)" for f in got)
    assert notes == []


def test_a_failing_rule_leaves_a_note_and_the_others_run() -> None:
    def broken(_f: MemFrame) -> str | None:
        raise RuntimeError("boom")

    facts = Facts((_frame(IN_MOD, exception=True),), (MOD,), "", TASK, "kernel_bug", None,
                  None, broken, 0xFFFFFFFFC0000000, broken)
    notes: list[str] = []
    assert find(facts, notes) == ()
    assert notes and "failed" in notes[0]


def _named(addr: int, function: str, offset: int, module: str | None) -> MemFrame:
    return MemFrame(addr, function, offset, 0x40, module, True, True, None, "task")


@pytest.mark.parametrize(("rip", "module"), [
    (CodeLocation("nullring_poll+0x1c/0x40 [vendor_nullring]", "nullring_poll", 0x1C, 0x40,
                  "vendor_nullring"), "vendor_nullring"),
    (CodeLocation("0xffffffffc0000010", address=IN_MOD), "vendor_nullring"),
    (None, None),  # no log: the innermost exception frame, as before
])
def test_the_null_dereference_is_where_the_oops_trapped(rip: CodeLocation | None,
                                                        module: str | None) -> None:
    """A timer interrupt taken in panic's delay loop adds an exception frame (``__delay``)
    inside the trapping one: the finding names the frame at the log's oops address."""
    irq = _named(KERNEL, "__delay", 0x8C, None)
    trap = _named(IN_MOD, "nullring_poll", 0x1C, "vendor_nullring")
    facts = dataclasses.replace(_facts([irq, trap], last=None, fault=0), rip=rip)
    (got,) = find(facts, [])
    assert (got.kind, got.module) == ("null-pointer-dereference", module)
