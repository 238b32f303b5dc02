# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""Crash titles: the kinds table as data, every kind on a literal x86_64 oops, and the real
fixture corpus against its crash oracle (the manifest's RIP symbol and module)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from signature import load_patterns, normalize_function
from signature.inputs import report_title, sign_report
from signature.titles import (
    KINDS_FILE,
    MAX_TITLE,
    TitleInput,
    compute_title,
    load_kinds,
    title_function,
)
from vmcore.analyze import analyze, analyze_log

from ..fixtures.identity import oracle_exists, read_oracle

DUMPS = Path(__file__).resolve().parents[1] / "fixtures" / "dumps"

CPU = "CPU: 1 PID: 93 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2"
CPU_CLEAN = "CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2"
HW = "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014"
END = "---[ end trace 0000000000000000 ]---"
TAIL_INIT = """\
 do_one_initcall+0x59/0x220
 do_init_module+0x4a/0x1f0
 __do_sys_finit_module+0xac/0x120
 do_syscall_64+0x58/0xc0
 entry_SYSCALL_64_after_hwframe+0x64/0xce
 </TASK>
Modules linked in: vendor_x(OE+) qemu_fw_cfg"""


def _oops(head: str, rip: str, trace: str, panic: str = "Fatal exception",
          cpu: str = CPU) -> bytes:
    lines = [head, cpu, HW]
    if rip:
        lines.append(f"RIP: 0010:{rip}")
    lines += ["RSP: 0018:ffffb2d3c03f7c80 EFLAGS: 00010246", "Call Trace:", " <TASK>", trace,
              TAIL_INIT, END]
    if rip:
        lines.append(f"RIP: 0010:{rip}")
    lines.append(f"Kernel panic - not syncing: {panic}")
    return ("\n".join(lines) + "\n").encode()


# hung_task_panic=1 on 6.1: the blocked task's trace, then khungtaskd's panic.
HUNG_TASK_61 = b"""\
INFO: task insmod:93 blocked for more than 120 seconds.
      Tainted: G           OE      6.1.0-56-cloud-amd64 #1 Debian 6.1.192-2
"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
task:insmod          state:D stack:0     pid:93    ppid:1      flags:0x00004000
Call Trace:
 <TASK>
 __schedule+0x34d/0x9e0
 schedule+0x5a/0xd0
 schedule_preempt_disabled+0x11/0x20
 __mutex_lock.constprop.0+0x3a0/0x6c0
 ring_wait_lock+0x1d/0x40 [vendor_x]
 do_one_initcall+0x59/0x220
 do_init_module+0x4a/0x1f0
 __do_sys_finit_module+0xac/0x120
 do_syscall_64+0x58/0xc0
 entry_SYSCALL_64_after_hwframe+0x64/0xce
RIP: 0033:0x47fbe9
RSP: 002b:00007fff5d080388 EFLAGS: 00000246 ORIG_RAX: 0000000000000139
 </TASK>
Kernel panic - not syncing: hung_task: blocked tasks
CPU: 0 PID: 30 Comm: khungtaskd Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
 panic+0x118/0x2f4
 watchdog.cold+0x118/0x118
 ? hungtask_pm_notify+0x50/0x50
 kthread+0xda/0x100
 ? kthread_complete_and_exit+0x20/0x20
 ret_from_fork+0x22/0x30
 </TASK>
Kernel Offset: 0x25c00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
---[ end Kernel panic - not syncing: hung_task: blocked tasks ]---
"""

PF = "#PF: supervisor {} in kernel mode\n#PF: error_code(0x0002) - not-present page\nOops: 0002 [#1] PREEMPT SMP NOPTI"

CASES: list[tuple[str, bytes, str, str]] = [
    ("null_pointer_dereference", _oops(
        "BUG: kernel NULL pointer dereference, address: 0000000000000008\n" + PF.format("read access"),
        "ring_poll.constprop.0+0xc/0x40 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]"),
     "BUG: kernel NULL pointer dereference in ring_poll [vendor_x]", "ring_poll"),
    ("page_fault", _oops(
        "BUG: unable to handle page fault for address: ffff9e0a4a1c2000\n" + PF.format("write access"),
        "ring_fill+0x2c/0x60 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]"),
     "BUG: unable to handle page fault for write in ring_fill [vendor_x]", "ring_fill"),
    ("page_fault", _oops(
        "BUG: unable to handle page fault for address: ffff9e0a4a1c2000\n" + PF.format("read access"),
        "ring_fill+0x2c/0x60", " ring_init+0x1d/0x1000"),
     "BUG: unable to handle page fault for read in ring_fill", "ring_fill"),
    ("page_fault", _oops(
        "BUG: unable to handle page fault for address: ffff9e0a4a1c2000\n" + PF.format("instruction fetch"),
        "0xffff9e0a4a1c2000", " ring_start+0x1d/0x40 [vendor_x]"),
     "BUG: unable to handle page fault for instruction fetch in ring_start [vendor_x]", "ring_start"),
    ("unloaded_module_code", _oops(
        "BUG: unable to handle page fault for address: ffffffffc04f400f\n" + PF.format("instruction fetch"),
        "0xffffffffc04f400f", " ? kthread+0xda/0x100",
        ).replace(b"Modules linked in: vendor_x(OE+) qemu_fw_cfg",
                  b"Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]"),
     "BUG: unable to handle page fault in unloaded module vendordeferio", "vendordeferio"),
    ("general_protection_fault", _oops(
        "general protection fault, probably for non-canonical address 0xdead000000000110: 0000 [#1] PREEMPT SMP NOPTI",
        "gpf_next_cookie.constprop.0+0x11/0x30 [vendor_x]", " gpf_init+0x1d/0x1000 [vendor_x]"),
     "general protection fault in gpf_next_cookie [vendor_x]", "gpf_next_cookie"),
    ("kernel_bug", _oops(
        "------------[ cut here ]------------\nkernel BUG at mm/slub.c:4327!\ninvalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "kfree+0x2a1/0x2b0", " ? report_bug+0xe6/0x170\n free_ring+0x1d/0x40 [vendor_x]"),
     "kernel BUG at mm/slub.c:4327 in free_ring [vendor_x]", "free_ring"),
    ("kernel_bug", _oops(
        "------------[ cut here ]------------\nkernel BUG at vendor_bugon.c:12!\ninvalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "bugon_start_queue+0x5/0x10 [vendor_bugon]", " bugon_init+0x1d/0x1000 [vendor_bugon]"),
     "kernel BUG at vendor_bugon.c:12 in bugon_start_queue [vendor_bugon]", "bugon_start_queue"),
    ("warning", _oops(
        "------------[ cut here ]------------\nWARNING: CPU: 1 PID: 93 at vendor_warn.c:11 warn_put_ref+0xf/0x20 [vendor_warn]",
        "warn_put_ref+0xf/0x20 [vendor_warn]", " warn_init+0x1d/0x1000 [vendor_warn]",
        panic="kernel: panic_on_warn set ..."),
     "WARNING at vendor_warn.c:11 in warn_put_ref [vendor_warn]", "warn_put_ref"),
    ("soft_lockup", _oops(
        "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [vspin:117]",
        "spin_wait_ready+0x9/0x20 [vendor_spin]", " kthread+0xda/0x100",
        panic="softlockup: hung tasks"),
     "BUG: soft lockup in spin_wait_ready [vendor_spin]", "spin_wait_ready"),
    ("hard_lockup", _oops(
        "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
        "spin_irqoff+0x9/0x20 [vendor_spin]", " kthread+0xda/0x100",
        panic="Hard LOCKUP"),
     "watchdog: hard LOCKUP in spin_irqoff [vendor_spin]", "spin_irqoff"),
    ("rcu_stall", _oops(
        "rcu: INFO: rcu_preempt self-detected stall on CPU",
        "spin_rcu+0x9/0x20 [vendor_spin]", " kthread+0xda/0x100",
        panic="RCU Stall"),
     "INFO: rcu detected stall in spin_rcu [vendor_spin]", "spin_rcu"),
    ("hung_task", HUNG_TASK_61,
     "INFO: task hung in ring_wait_lock [vendor_x]", "ring_wait_lock"),
    ("divide_error", _oops(
        "divide error: 0000 [#1] PREEMPT SMP NOPTI",
        "ring_ratio+0x12/0x30 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]"),
     "divide error in ring_ratio [vendor_x]", "ring_ratio"),
    ("invalid_opcode", _oops(
        "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "ring_ud2+0x4/0x10 [vendor_x]", " ring_init+0x1d/0x1000 [vendor_x]"),
     "invalid opcode in ring_ud2 [vendor_x]", "ring_ud2"),
    ("double_fault", _oops(
        "double fault: 0000 [#1] PREEMPT SMP NOPTI",
        "ring_recurse+0x8/0x20 [vendor_x]", " ring_recurse+0x1d/0x20 [vendor_x]"),
     "double fault in ring_recurse [vendor_x]", "ring_recurse"),
    ("stack_overflow", _oops(
        "BUG: stack guard page was hit at 0000000087f3c3f6 (stack is 00000000c4e15e2e..000000002a5ed1b7)\n"
        "kernel stack overflow (double-fault): 0000 [#1] PREEMPT SMP NOPTI",
        "ring_recurse+0x8/0x20 [vendor_x]", " ring_recurse+0x1d/0x20 [vendor_x]"),
     "BUG: stack guard page was hit in ring_recurse [vendor_x]", "ring_recurse"),
    ("stack_overflow", _oops(  # 6.1+ name the stack and die "stack guard page"
        "BUG: TASK stack guard page was hit at (____ptrval____) (stack is (____ptrval____)..(____ptrval____))\n"
        "stack guard page: 0000 [#1] PREEMPT SMP NOPTI",
        "ring_recurse+0x2c/0x8d [vendor_x]", " ring_recurse+0x56/0x8d [vendor_x]",
        panic="Fatal exception in interrupt"),
     "BUG: stack guard page was hit in ring_recurse [vendor_x]", "ring_recurse"),
    ("list_corruption", _oops(
        "------------[ cut here ]------------\nkernel BUG at lib/list_debug.c:56!\ninvalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "__list_del_entry_valid.cold+0x1d/0x47", " ring_drop+0x19/0x40 [vendor_x]"),
     "BUG: corrupted list in ring_drop [vendor_x]", "ring_drop"),
    ("refcount", _oops(
        "------------[ cut here ]------------\nWARNING: CPU: 1 PID: 93 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110",
        "refcount_warn_saturate+0xba/0x110", " ring_put+0x30/0x40 [vendor_x]",
        panic="kernel: panic_on_warn set ..."),
     "refcount bug in ring_put [vendor_x]", "ring_put"),
    ("sleep_in_atomic", (
        "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580\n"
        "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 93, name: insmod\n"
        f"{CPU}\n{HW}\nCall Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n"
        " __might_resched.cold+0xcc/0xde\n __mutex_lock.constprop.0+0x48/0x6c0\n"
        " ring_lock_atomic+0x25/0x40 [vendor_x]\n" + TAIL_INIT + "\n").encode(),
     "BUG: sleeping function called from invalid context in ring_lock_atomic [vendor_x]",
     "ring_lock_atomic"),
    ("scheduling_while_atomic", (
        "BUG: scheduling while atomic: insmod/93/0x00000002\n"
        f"{CPU}\n{HW}\nCall Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n"
        " __schedule_bug.cold+0x47/0x53\n __schedule+0x5e7/0x9e0\n schedule+0x5a/0xd0\n"
        " schedule_timeout+0x88/0x100\n ring_sleep_locked+0x25/0x40 [vendor_x]\n"
        + TAIL_INIT + "\n").encode(),
     "BUG: scheduling while atomic in ring_sleep_locked [vendor_x]", "ring_sleep_locked"),
    ("out_of_memory", (
        "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\n"
        f"{CPU_CLEAN}\n{HW}\nCall Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n panic+0x118/0x2f4\n"
        " out_of_memory.cold+0x2f/0x7e\n __alloc_pages_slowpath.constprop.0+0xb9b/0xd40\n"
        " </TASK>\n").encode(),
     "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled", "Out of memory"),
    ("panic", (
        "sysrq: Trigger a crash\nKernel panic - not syncing: sysrq triggered crash\n"
        f"{CPU_CLEAN}\n{HW}\nCall Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n panic+0x118/0x2f4\n"
        " sysrq_handle_crash+0x16/0x20\n __handle_sysrq.cold+0x43/0x11b\n </TASK>\n").encode(),
     "Kernel panic - not syncing: sysrq triggered crash", "sysrq triggered crash"),
    ("panic", (
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
        f"{CPU_CLEAN}\nCall Trace:\n dump_stack+0x6b/0x83\n panic+0x101/0x2d7\n"
        " mount_block_root+0x2f3/0x30d\n").encode(),
     "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "VFS"),
    ("corrupted", (
        b"BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
        b"#PF: supervisor read access in kernel mode\n"),
     "corrupted report (BUG: kernel NULL pointer dereference, address: 0000000000000008)",
     "corrupted"),
    ("corrupted", (
        "BUG: unable to handle page fault for address: ffff9e0a4a1c2000\n"
        "#PF: supervisor read access in kernel mode\nOops: 0000 [#1] PREEMPT SMP NOPTI\n"
        "BUG: kernel NULL pointer dereference, address: 0000000000000010\n"
        "Oops: 0000 [#2] PREEMPT SMP NOPTI\n"
        f"{CPU}\nRIP: 0010:ring_poll+0xc/0x40 [vendor_x]\nCall Trace:\n <TASK>\n"
        " ring_init+0x1d/0x1000 [vendor_x]\n </TASK>\n").encode(),
     "corrupted report (BUG: unable to handle page fault for address: ffff9e0a4a1c2000)",
     "corrupted"),
]


def test_every_kind_line_compiles_and_renders() -> None:
    text = resources.files("signature").joinpath("data", KINDS_FILE).read_text()
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    kinds = load_kinds()
    assert len(kinds) == len(rows)
    assert len({k.kind for k in kinds}) == len(kinds), "a kind is named twice"
    for k in kinds:
        assert text.splitlines()[k.line - 1].startswith(k.kind + " :: ")
        names = set(re.findall(r"\{(\w+)\}", k.template))
        assert names <= set(k.pattern.groupindex) | {
            "func", "location", "access", "message", "headline"}, k.kind


REQUIRED = {"null_pointer_dereference", "page_fault", "unloaded_module_code",
            "general_protection_fault", "kernel_bug", "warning", "soft_lockup", "hard_lockup",
            "rcu_stall", "hung_task", "divide_error", "invalid_opcode", "double_fault",
            "stack_overflow", "list_corruption", "refcount", "sleep_in_atomic",
            "scheduling_while_atomic", "out_of_memory", "panic", "corrupted"}


def test_every_required_kind_has_a_row_and_a_literal_case() -> None:
    assert {k.kind for k in load_kinds()} >= REQUIRED
    assert {c[0] for c in CASES} == REQUIRED


@pytest.mark.parametrize(("kind", "log", "title", "names"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_title_of_each_kind(kind: str, log: bytes, title: str, names: str) -> None:
    report = analyze_log(log, source="literal").report
    t = report_title(report)
    assert (t.kind, t.text) == (kind, title)
    assert names in t.text
    assert len(t.text) <= MAX_TITLE and "\n" not in t.text


def test_alternatives_drop_what_moves_between_builds() -> None:
    bug = next(c for c in CASES if c[2].startswith("kernel BUG at mm/slub.c"))
    t = report_title(analyze_log(bug[1], source="literal").report)
    assert t.alternatives == ("kernel BUG in free_ring [vendor_x]",)
    corrupted = next(c for c in CASES if c[0] == "corrupted")
    assert report_title(analyze_log(corrupted[1], source="literal").report).alternatives == ()


def test_hostile_text_stays_one_bounded_line() -> None:
    msg = "x\x1b[31m\ny" + "z" * 300
    t = compute_title(TitleInput((("class", "panic"), ("panic", msg)), ()))
    assert "\x1b" not in t.text and "\n" not in t.text
    assert len(t.text) == MAX_TITLE and t.text.endswith("…")


@pytest.mark.parametrize(
    ("frames", "func"),
    [(("memcpy_erms", "refcount_warn_saturate", "ring_put [m]"), "ring_put [m]"),
     (("??", "kfree", "??"), "kfree"), (("??",), None), ((), None)],
)
def test_title_function_skips_prefix_helpers(frames: tuple[str, ...], func: str | None) -> None:
    assert title_function(frames) == func


def _corpus() -> list[Path]:
    return sorted(p for p in DUMPS.iterdir() if oracle_exists(p / "dmesg.txt"))


# The kind each factory scenario is (tests/fixtures/factory/common.py SCENARIOS).
SCENARIO_KINDS = {
    "uau": "unloaded_module_code", "null": "null_pointer_dereference", "bugon": "kernel_bug",
    "gpf": "general_protection_fault", "warn": "warning", "lockup": "soft_lockup",
    "sysrq": "panic", "hung": "hung_task", "div": "divide_error", "list": "list_corruption",
    "refcount": "refcount", "atomic": "scheduling_while_atomic",
    "timer": "null_pointer_dereference", "oom": "out_of_memory", "stack": "stack_overflow"}
BARE_PANICS = {"sysrq", "oom"}  # panic() with no oops: the message is the title

_CRASH_FRAME = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at [0-9a-f]+(?: \[(\w+)\])?")
_CRASH_EXCEPTION = re.compile(r"^\s*\[exception RIP: ([^\]+]+)")
_CRASH_RIP = re.compile(r"^\s*RIP: ([0-9a-f]{16}) ")
_CRASH_MOD = re.compile(r"^[0-9a-f]{16}\s+(\w+)\s+([0-9a-f]{16})\s+(\d+)\s", re.M)


def crash_frames(bt: str, mods: str) -> list[tuple[str, str | None]]:
    """The frames of crash's ``bt`` from its first ``[exception RIP: …]`` below a frame down
    (all of them when there is none: a direct panic, a blocked task), as ``(function,
    module)``; the module of the exception RIP is the one of crash's ``mod`` list whose range
    holds its address."""
    ranges = [(int(b, 16), int(n), name) for name, b, n in _CRASH_MOD.findall(mods)]
    lines = bt.splitlines()
    before: list[tuple[str, str | None]] = []
    after: list[tuple[str, str | None]] | None = None
    for i, line in enumerate(lines):
        exc = _CRASH_EXCEPTION.match(line)
        # an exception RIP above every frame is where the CPU was stopped (panic()'s delay
        # loop on 6.12), not the exception that crashed it
        if exc and after is None and before:
            rip = _CRASH_RIP.match(lines[i + 1]) if i + 1 < len(lines) else None
            addr = int(rip[1], 16) if rip else 0
            module = next((name for base, size, name in ranges if base <= addr < base + size),
                          None)
            after = [(exc[1], module)]
        elif (frame := _CRASH_FRAME.match(line)) is not None:
            (before if after is None else after).append((frame[1], frame[2]))
    return before if after is None else after


_DRGN_FRAME = re.compile(r"^#\d+\s+([\w.]+)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)? \((.*)\)$")


def drgn_frames(text: str, modules: list[str]) -> list[tuple[str, str | None]]:
    """drgn's frames below its last exception or interrupt entry (``asm_exc_*``,
    ``asm_sysvec_*``), as ``(function, module)``: the module is the loaded one whose single
    source file the frame's debug info names (``vendor_spin.c`` -> ``vendor_spin``)."""
    frames = [(m[1], Path(m[2].split(":")[0]).stem) for line in text.splitlines()
              if (m := _DRGN_FRAME.match(line))]
    entry = max((i for i, (f, _) in enumerate(frames) if f.startswith("asm_")), default=-1)
    return [(f, src if src in modules else None) for f, src in frames[entry + 1:]]


def crash_title_function(case: Path, manifest: dict) -> str | None:
    """The function a title must name, by the crash oracle: the first frame from the exception
    RIP down (for a hung task: of the blocked task, crash's ``foreach UN bt``) that is neither
    crash plumbing (skip_frames.txt) nor a generic helper (prefix_frames.txt), with its module.
    Where crash cannot decode the exception frame (5.10's soft lockup on the IRQ stack:
    "no symbolic reference"), drgn's unwind through it."""
    skip = load_patterns("skip_frames.txt") + load_patterns("prefix_frames.txt")
    bt_file = "crash-bt-blocked.txt" if manifest["scenario"] == "hung" else "crash-bt.txt"
    bt = (case / bt_file).read_text(errors="replace")
    frames = crash_frames(bt, (case / "crash-mod.txt").read_text(errors="replace"))
    if frames and frames[0][0] == "no symbolic reference":
        frames = drgn_frames((case / "drgn-bt.txt").read_text(errors="replace"),
                             manifest["loaded_modules"])
    for func, module in frames:
        name = normalize_function(func)
        if not any(p.fullmatch(name) for p in skip):
            return f"{name} [{module}]" if module else name
    return None


@pytest.mark.parametrize("case", _corpus(), ids=lambda p: p.name)
def test_corpus_titles_name_kind_and_oracle_function(case: Path) -> None:
    m = json.loads((case / "manifest.json").read_text())
    t = report_title(analyze_log(read_oracle(case / "dmesg.txt"), source=case.name).report)
    assert t.kind == SCENARIO_KINDS[m["scenario"]]
    if m["scenario"] == "uau":
        assert t.text.endswith(f"unloaded module {m['last_unloaded']}")
    elif m["scenario"] in BARE_PANICS:  # a direct panic(): the message names it
        assert t.text == m["panic_line"]
    elif (case / "crash-bt.txt").is_file():
        func = crash_title_function(case, m)
        assert func is not None and t.text.endswith(f" in {func}"), (t.text, func)
    else:  # arm64: no crash oracle; the kernel's own pc line
        assert f" in {normalize_function(m['rip_symbol'])} [{m['rip_module']}]" in t.text


def test_every_kind_is_a_real_dump_on_three_kernels() -> None:
    """The corpus the title tests run on: each scenario has a committed case with crash and
    drgn oracles on 5.10, 6.1 and 6.12 (sleeping in atomic context: 6.1 and 6.12; 5.10's
    config reports nothing). Their titles are checked above and below."""
    have: dict[str, set[str]] = {}
    for case in _corpus():
        m = json.loads((case / "manifest.json").read_text())
        if m.get("arch", "x86_64") == "x86_64" and (case / "crash-bt.txt").is_file() \
                and (case / "drgn-bt.txt").is_file():
            short = ".".join(re.split(r"[-+]", m["kernel_release"])[0].split(".")[:2])
            have.setdefault(m["scenario"], set()).add(short)
    assert set(have) == set(SCENARIO_KINDS)
    missing = {s: sorted({"5.10", "6.1", "6.12"} - k) for s, k in have.items()
               if s not in ("bugon", "gpf", "warn")}  # the first three: 6.1 only
    assert missing == {s: [] for s in missing} | {"atomic": ["5.10"]}, missing


def test_same_bug_same_title_on_every_kernel() -> None:
    by_cluster: dict[str, set[str]] = {}
    for case in _corpus():
        m = json.loads((case / "manifest.json").read_text())
        t = report_title(analyze_log(read_oracle(case / "dmesg.txt"), source=case.name).report)
        by_cluster.setdefault(m["cluster"], set()).add(t.text)
    assert all(len(titles) == 1 for titles in by_cluster.values()), by_cluster
    assert len({next(iter(t)) for t in by_cluster.values()}) == len(by_cluster)


def test_no_crash_in_the_log_is_said_so() -> None:
    t = report_title(analyze_log(b"Linux version 6.1.0 (x) #1\nplain line\n", source="x").report)
    assert (t.kind, t.text) == ("no_crash", "no crash in the kernel log")


def _real_cases() -> list[object]:
    from ..vmcore.conftest import real_cases

    return list(real_cases())


@pytest.mark.parametrize("case", _real_cases(), ids=lambda c: getattr(c, "name", str(c)))
def test_memory_based_title_equals_the_log_based_one(case: object) -> None:
    """With the kernel's symbols the frames come from the memory unwind; the title (and so
    the cluster's) must not move: the real dumps, through the deep tests' symbol packs."""
    from vmcore.source import LocalFileSource

    from ..vmcore.test_deep_real import _report

    mem = _report(case)  # type: ignore[arg-type]
    with LocalFileSource(case.dump) as src:  # type: ignore[attr-defined]
        log_only = analyze(src).report
    signed = sign_report(mem)
    scenario = case.manifest["scenario"]  # type: ignore[attr-defined]
    assert signed.explanation.source == ("log" if scenario in LOG_SIGNED else "memory")
    assert signed.title.text == report_title(log_only).text


# Scenarios signed from the log even with symbols: the panicking task of a hung-task panic is
# khungtaskd (the blocked task's stack is printed in the log). (A stack overflow is signed
# from memory: the unwinder starts on the CPU's double-fault stack.)
LOG_SIGNED = {"hung"}


@pytest.mark.parametrize("keep", [1, 3, 5])
def test_a_real_log_cut_inside_its_oops_is_a_corrupted_report(keep: int) -> None:
    """The 6.1 NULL dereference's own log, cut ``keep`` lines after its headline (before the
    RIP and the trace): the title says the report is corrupted instead of guessing."""
    text = read_oracle(DUMPS / "6.1-null-1--kdump-tools" / "dmesg.txt").decode()
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if "BUG: kernel NULL pointer" in ln)
    cut = "\n".join(lines[: head + keep]) + "\n"
    t = report_title(analyze_log(cut.encode(), source="cut").report)
    assert t.kind == "corrupted"
    assert t.text == ("corrupted report (BUG: kernel NULL pointer dereference, address: "
                      "0000000000000000)")
