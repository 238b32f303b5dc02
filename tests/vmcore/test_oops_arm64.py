# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""The oops parser on arm64 logs: literal excerpts of real Debian 6.1 arm64 crashes (the
fixture factory's arm64 boots, ``tests/fixtures/factory/arm64.py``; register dumps shortened),
and the ESR decoder against the kernel's own decoding printed in those logs."""

from __future__ import annotations

from typing import Any

import pytest

from vmcore.arm64_esr import decode_esr
from vmcore.oops import parse_log

# Debian 6.1.192-2 cloud-arm64 under QEMU TCG (-M virt -cpu max): NULL dereference in a module.
NULL_61_A64 = """\
Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
Mem abort info:
  ESR = 0x0000000096000006
  EC = 0x25: DABT (current EL), IL = 32 bits
  SET = 0, FnV = 0
  EA = 0, S1PTW = 0
  FSC = 0x06: level 2 translation fault
Data abort info:
  ISV = 0, ISS = 0x00000006
  CM = 0, WnR = 0
user pgtable: 4k pages, 48-bit VAs, pgdp=00000000483a3000
[0000000000000000] pgd=080000004800e003, p4d=080000004800e003, pud=080000004800c003, pmd=0000000000000000
Internal error: Oops: 0000000096000006 [#1] SMP
Modules linked in: vendor_nullring(OE+) qemu_fw_cfg
CPU: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
pc : nullring_poll.constprop.0+0x1c/0xff4 [vendor_nullring]
lr : nullring_init+0x2c/0x1000 [vendor_nullring]
sp : ffff80000822b850
x29: ffff80000822b850 x28: ffff80000822b9c0 x27: 0000000000000000
x8 : 0000000000017fe8 x7 : c0000000ffffefff x6 : 0000000000057fa8
x2 : 0000000000000000 x1 : 0000000000000000 x0 : ffffcec5bd7bc050
Call trace:
 nullring_poll.constprop.0+0x1c/0xff4 [vendor_nullring]
 do_one_initcall+0x64/0x26c
 do_init_module+0x50/0x1fc
 load_module+0x1c64/0x2210
 __do_sys_finit_module+0xb0/0x130
 __arm64_sys_finit_module+0x28/0x34
 invoke_syscall+0x68/0xe0
 el0_svc_common.constprop.0+0x4c/0xf4
 do_el0_svc+0x2c/0x9c
 el0_svc+0x34/0xdc
 el0t_64_sync_handler+0xf4/0x120
 el0t_64_sync+0x18c/0x190
Code: 91014000 d503233f d50323bf f9400401 (f9400020)
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Oops: Fatal exception
Kernel Offset: 0x4ec5ec200000 from 0xffff800008000000
PHYS_OFFSET: 0x40000000
CPU features: 0x000000,000f0093,e693f73f
Memory Limit: none
---[ end Kernel panic - not syncing: Oops: Fatal exception ]---
"""

# 6.1 arm64: a kthread left running past rmmod executes freed module text (bare pc, lr = pc).
UAU_61_A64 = """\
Unable to handle kernel paging request at virtual address ffffafd1a8904028
Mem abort info:
  ESR = 0x0000000086000007
  EC = 0x21: IABT (current EL), IL = 32 bits
  SET = 0, FnV = 0
  EA = 0, S1PTW = 0
  FSC = 0x07: level 3 translation fault
swapper pgtable: 4k pages, 48-bit VAs, pgdp=000000004158f000
[ffffafd1a8904028] pgd=100000004ffff003, p4d=100000004ffff003, pud=10000000480ae003, pmd=10000000480b8003, pte=0000000000000000
Internal error: Oops: 0000000086000007 [#1] SMP
Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
CPU: 0 PID: 87 Comm: vdeferio8_1 Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
pc : 0xffffafd1a8904028
lr : 0xffffafd1a8904028
sp : ffff80000823be50
x29: ffff80000823be50 x28: 0000000000000000 x27: 0000000000000000
x2 : 0000000000000000 x1 : ffff000003098000 x0 : 0000000000000000
Call trace:
 0xffffafd1a8904028
 kthread+0xe0/0xe4
 ret_from_fork+0x10/0x20
Code: bad PC value
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Oops: Fatal exception
Kernel Offset: 0x2fd207200000 from 0xffff800008000000
---[ end Kernel panic - not syncing: Oops: Fatal exception ]---
"""

# 6.1 arm64: BUG_ON in a module goes through brk #0x800.
BUGON_61_A64 = """\
------------[ cut here ]------------
kernel BUG at vendor_bugon.c:12!
Internal error: Oops - BUG: 00000000f2000800 [#1] SMP
Modules linked in: vendor_bugon(OE+) qemu_fw_cfg
CPU: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
pc : bugon_start_queue+0x18/0xff4 [vendor_bugon]
lr : bugon_init+0x24/0x1000 [vendor_bugon]
sp : ffff80000824b790
Call trace:
 bugon_start_queue+0x18/0xff4 [vendor_bugon]
 do_one_initcall+0x64/0x26c
 do_init_module+0x50/0x1fc
Code: d0000000 d503233f b9402001 34000041 (d4210000)
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Oops - BUG: Fatal exception
---[ end Kernel panic - not syncing: Oops - BUG: Fatal exception ]---
"""

# 6.1 arm64: echo c > /proc/sysrq-trigger (panic() dumps the stack; no register dump).
SYSRQ_61_A64 = """\
sysrq: Trigger a crash
Kernel panic - not syncing: sysrq triggered crash
CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
Call trace:
 dump_backtrace+0xe4/0x140
 show_stack+0x20/0x30
 dump_stack_lvl+0x64/0x80
 dump_stack+0x18/0x34
 panic+0x184/0x364
 sysrq_reset_seq_param_set+0x0/0xa0
 __handle_sysrq+0x90/0x19c
 write_sysrq_trigger+0x7c/0xc0
Kernel Offset: 0x448260c00000 from 0xffff800008000000
PHYS_OFFSET: 0x40000000
---[ end Kernel panic - not syncing: sysrq triggered crash ]---
"""

# 6.1 arm64: WARN_ON with panic_on_warn=1 (brk #0x803 handled by report_bug: no die line).
WARN_61_A64 = """\
------------[ cut here ]------------
WARNING: CPU: 0 PID: 85 at vendor_warn.c:11 warn_put_ref+0x18/0xff4 [vendor_warn]
Modules linked in: vendor_warn(OE+) qemu_fw_cfg
CPU: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)
pc : warn_put_ref+0x18/0xff4 [vendor_warn]
lr : warn_init+0x24/0x1000 [vendor_warn]
sp : ffff800008243ac0
Call trace:
 warn_put_ref+0x18/0xff4 [vendor_warn]
 do_one_initcall+0x64/0x26c
Kernel panic - not syncing: kernel: panic_on_warn set ...
CPU: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
Hardware name: linux,dummy-virt (DT)
Call trace:
 dump_backtrace+0xe4/0x140
 panic+0x184/0x364
 check_panic_on_warn+0x8c/0x9c
 __warn+0xb4/0x1a0
 warn_put_ref+0x18/0xff4 [vendor_warn]
---[ end Kernel panic - not syncing: kernel: panic_on_warn set ... ]---
"""

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("6.1 null deref", NULL_61_A64, {
        "klass": "page_fault", "qualifiers": ("null_dereference",), "fault_address": 0,
        "arch": "arm64", "cpu": 0, "pid": 85, "comm": "insmod", "taint.letters": "OE",
        "kernel_release": "6.1.0-56-cloud-arm64", "hardware": "linux,dummy-virt (DT)",
        "die_line": "Internal error: Oops: 0000000096000006 [#1] SMP", "die_reason": "Oops",
        "die_error_code": 0x96000006, "die_counter": 1, "die_flags": ("SMP",),
        "rip.function": "nullring_poll.constprop.0", "rip.offset": 0x1C, "rip.size": 0xFF4,
        "rip.module": "vendor_nullring", "rip_cs": None, "lr.function": "nullring_init",
        "lr.module": "vendor_nullring", "registers.SP": 0xFFFF80000822B850,
        "registers.PSTATE": 0x60400005, "registers.X29": 0xFFFF80000822B850,
        "registers.X7": 0xC0000000FFFFEFFF, "registers.X0": 0xFFFFCEC5BD7BC050,
        "page_fault.error_code": 0x96000006, "page_fault.access": "read",
        "page_fault.mode": "kernel", "page_fault.reason": "level 2 translation fault",
        "page_fault.error_flags": ("DABT_CUR", "TRANSLATION_L2"),
        "esr.ec_name": "DABT_CUR", "esr.fault_level": 2, "esr.write": False,
        "code": bytes.fromhex("00400191 3f2303d5 bf2303d5 010440f9 200040f9"),
        "code_fault_index": 16,
        # nullring_init: the leaf function's caller, only in the lr line, put after the pc
        "frames": [("nullring_poll.constprop.0", "vendor_nullring", True, None),
                   ("nullring_init", "vendor_nullring", True, None),
                   ("do_one_initcall", None, True, None), ("do_init_module", None, True, None),
                   ("load_module", None, True, None),
                   ("__do_sys_finit_module", None, True, None),
                   ("__arm64_sys_finit_module", None, True, None),
                   ("invoke_syscall", None, True, None),
                   ("el0_svc_common.constprop.0", None, True, None),
                   ("do_el0_svc", None, True, None), ("el0_svc", None, True, None),
                   ("el0t_64_sync_handler", None, True, None),
                   ("el0t_64_sync", None, True, None)],
        "modules": (("vendor_nullring", "OE+"), ("qemu_fw_cfg", "")),
        "end_marker": "---[ end trace 0000000000000000 ]---",
        "log.panic_message": "Oops: Fatal exception", "log.kernel_offset": 0x4EC5EC200000,
        "log.klass": "page_fault"}),
    ("6.1 use after unload", UAU_61_A64, {
        "klass": "page_fault", "qualifiers": ("instruction_fetch",),
        "fault_address": 0xFFFFAFD1A8904028, "comm": "vdeferio8_1", "pid": 87,
        "rip.address": 0xFFFFAFD1A8904028, "rip.function": None,
        "lr.address": 0xFFFFAFD1A8904028, "code": None, "code_unavailable": "bad PC value",
        "page_fault.access": "instruction fetch", "page_fault.mode": "kernel",
        "page_fault.error_flags": ("IABT_CUR", "TRANSLATION_L3"), "esr.fault_level": 3,
        "frames": [(None, None, True, None), ("kthread", None, True, None),
                   ("ret_from_fork", None, True, None)],
        "last_unloaded": ("vendordeferio", "OE"), "modules": (("qemu_fw_cfg", ""),)}),
    ("6.1 BUG_ON", BUGON_61_A64, {
        "klass": "kernel_bug", "bug_file": "vendor_bugon.c", "bug_line": 12,
        "die_reason": "Oops - BUG", "die_error_code": 0xF2000800, "page_fault": None,
        "esr.ec_name": "BRK64", "esr.brk_imm": 0x800, "esr.brk_kind": "BUG",
        "esr.flags": ("BRK64", "BRK_BUG"), "rip.function": "bugon_start_queue",
        "lr.function": "bugon_init", "code_fault_index": 16,
        "frames": [("bugon_start_queue", "vendor_bugon", True, None),
                   ("bugon_init", "vendor_bugon", True, None),
                   ("do_one_initcall", None, True, None), ("do_init_module", None, True, None)],
        "log.panic_message": "Oops - BUG: Fatal exception"}),
    ("6.1 WARN panic_on_warn", WARN_61_A64, {
        "klass": "warning", "bug_file": "vendor_warn.c", "bug_line": 11, "cpu": 0, "pid": 85,
        "warning_function.function": "warn_put_ref", "rip.function": "warn_put_ref",
        "lr.function": "warn_init", "arch": "arm64", "die_reason": None, "esr": None,
        "frames": [("warn_put_ref", "vendor_warn", True, None),
                   ("warn_init", "vendor_warn", True, None),
                   ("do_one_initcall", None, True, None)],
        "log.klass": "warning", "log.panic_message": "kernel: panic_on_warn set ..."}),
    ("6.1 sysrq", SYSRQ_61_A64, {
        "klass": "sysrq", "comm": "init", "pid": 1, "rip": None, "esr": None, "arch": "arm64",
        "frames": [("dump_backtrace", None, True, None), ("show_stack", None, True, None),
                   ("dump_stack_lvl", None, True, None), ("dump_stack", None, True, None),
                   ("panic", None, True, None), ("sysrq_reset_seq_param_set", None, True, None),
                   ("__handle_sysrq", None, True, None),
                   ("write_sysrq_trigger", None, True, None)],
        "log.klass": "sysrq", "log.kernel_offset": 0x448260C00000}),
]


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_arm64_oops_table(name: str, text: str, want: dict[str, Any]) -> None:
    log = parse_log(text)
    oops = log.primary
    assert oops is not None
    assert len(log.oopses) == (2 if name.startswith("6.1 WARN") else 1)
    for key, value in want.items():
        if key.startswith("log."):
            assert _get(log, key[4:]) == value, key
        elif key == "frames":
            assert [(f.function, f.module, f.reliable, f.context) for f in oops.frames] == value
        elif key == "modules":
            assert tuple((m.name, m.taints) for m in oops.modules or ()) == value
        elif key == "last_unloaded":
            lu = oops.last_unloaded
            assert ((lu.name, lu.taints) if lu else None) == value
        else:
            assert _get(oops, key) == value, key


# (ESR, what the kernel printed for it in a real log: EC line, FSC line, WnR/CM), plus the
# decoder's own fields.
@pytest.mark.parametrize(("esr", "ec_text", "fsc_text", "level", "access", "mode"), [
    (0x96000006, "DABT (current EL)", "level 2 translation fault", 2, "read", "kernel"),
    (0x96000045, "DABT (current EL)", "level 1 translation fault", 1, "write", "kernel"),
    (0x86000007, "IABT (current EL)", "level 3 translation fault", 3, "instruction fetch",
     "kernel"),
    (0x9600004F, "DABT (current EL)", "level 3 permission fault", 3, "write", "kernel"),
    (0x92000007, "DABT (lower EL)", "level 3 translation fault", 3, "read", "user"),
    (0x96000021, "DABT (current EL)", "alignment fault", None, "read", "kernel"),
    (0x96000010, "DABT (current EL)", "synchronous external abort", None, "read", "kernel"),
    (0x9600002B, "DABT (current EL)", "level -1 translation fault", -1, "read", "kernel"),
    # cache maintenance on an unmapped address: WnR=1 yet a read (CM=1)
    (0x96000146, "DABT (current EL)", "level 2 translation fault", 2, "read", "kernel"),
])
def test_esr_aborts(esr: int, ec_text: str, fsc_text: str, level: int | None, access: str,
                    mode: str) -> None:
    info = decode_esr(esr)
    assert (info.ec_text, info.fsc_text, info.fault_level, info.access, info.mode) == (
        ec_text, fsc_text, level, access, mode)
    assert info.il


@pytest.mark.parametrize(("esr", "name", "kind"), [
    (0xF2000800, "BRK64", "BUG"),
    (0xF2000904, "BRK64", "KASAN"),
    (0xF2005512, "BRK64", "UBSAN"),
    (0x02000000, "UNKNOWN", None),
    (0x36000000, "BTI", None),  # EC 0x0d
])
def test_esr_other_classes(esr: int, name: str, kind: str | None) -> None:
    info = decode_esr(esr)
    assert info.fsc is None and info.access is None
    assert (info.ec_name, info.brk_kind) == (name, kind)


def test_x86_die_line_is_not_taken_for_arm64() -> None:
    log = parse_log("Oops: 0002 [#1] SMP\nCall Trace:\n foo+0x1/0x2\n")
    assert log.primary is not None
    assert log.primary.arch is None and log.primary.esr is None


def test_lr_is_not_added_when_the_trace_has_it_or_it_is_the_same_function() -> None:
    # a non-leaf function: lr points into itself (or is the next printed frame)
    for lr in ("nullring_poll.constprop.0+0x10/0xff4 [vendor_nullring]",
               "do_one_initcall+0x64/0x26c"):
        text = NULL_61_A64.replace("lr : nullring_init+0x2c/0x1000 [vendor_nullring]",
                                   f"lr : {lr}")
        oops = parse_log(text).primary
        assert oops is not None
        assert [f.function for f in oops.frames[:2]] == ["nullring_poll.constprop.0",
                                                         "do_one_initcall"]
