# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""The oops parser on literal log excerpts from several kernel versions (x86_64)."""

from __future__ import annotations

from typing import Any

import pytest

from vmcore.oops import decode_pf_error, parse_location, parse_log

# 6.1 (Debian 6.1.192, from the fixture corpus): NULL dereference in a module during insmod.
NULL_61 = """\
BUG: kernel NULL pointer dereference, address: 0000000000000000
#PF: supervisor read access in kernel mode
#PF: error_code(0x0000) - not-present page
PGD 299d067 P4D 299d067 PUD 299e067 PMD 0
Oops: 0000 [#1] PREEMPT SMP NOPTI
CPU: 1 PID: 92 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:nullring_poll.constprop.0+0xc/0xffb [vendor_nullring]
Code: Unable to access opcode bytes at 0xffffffffc0411fe7.
RSP: 0018:ffffcc20403f3cb8 EFLAGS: 00000246
RAX: 0000000000000022 RBX: ffffffffc0417000 RCX: c0000000ffffefff
CR2: ffffffffc0411fe7 CR3: 0000000002992000 CR4: 00000000000006a0
Call Trace:
 <TASK>
 nullring_init+0x1d/0x1000 [vendor_nullring]
 do_one_initcall+0x59/0x220
 ? handle_mm_fault+0xdb/0x2d0
 entry_SYSCALL_64_after_hwframe+0x6e/0xd8
RIP: 0033:0x47fbe9
RSP: 002b:00007fff5d080388 EFLAGS: 00000246 ORIG_RAX: 0000000000000139
 </TASK>
Modules linked in: vendor_nullring(OE+) qemu_fw_cfg
CR2: 0000000000000000
---[ end trace 0000000000000000 ]---
RIP: 0010:nullring_poll.constprop.0+0xc/0xffb [vendor_nullring]
Kernel panic - not syncing: Fatal exception
Kernel Offset: 0x25c00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
---[ end Kernel panic - not syncing: Fatal exception ]---
"""

# 6.1: instruction fetch from unloaded module text, bare RIP, last unloaded with taints.
UAU_61 = """\
BUG: unable to handle page fault for address: ffffffffc04f400f
#PF: supervisor instruction fetch in kernel mode
#PF: error_code(0x0010) - not-present page
Oops: 0010 [#1] PREEMPT SMP NOPTI
CPU: 1 PID: 94 Comm: vdeferio8_1 Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
RIP: 0010:0xffffffffc04f400f
Code: Unable to access opcode bytes at 0xffffffffc04f3fe5.
Call Trace:
 <TASK>
 ? kthread+0xda/0x100
 ? ret_from_fork+0x22/0x30
 </TASK>
Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
CR2: ffffffffc04f400f
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Fatal exception
"""

# 6.12 (trixie): doubled "Oops: " prefix, UID in the CPU line, spelled-out taint line.
UAU_612 = """\
BUG: unable to handle page fault for address: ffffffffc0a1c00f
#PF: supervisor instruction fetch in kernel mode
#PF: error_code(0x0010) - not-present page
PGD 1b2a067 P4D 1b2a067 PUD 1b2c067 PMD 2fe5067 PTE 0
Oops: Oops: 0010 [#1] PREEMPT SMP NOPTI
CPU: 0 UID: 0 PID: 97 Comm: vdeferio8_0 Tainted: G           OE      6.12.118+deb13-cloud-amd64 #1  Debian 6.12.118-1
Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:0xffffffffc0a1c00f
Code: Unable to access opcode bytes at 0xffffffffc0a1bfe5.
RSP: 0018:ffffb37e80263ef0 EFLAGS: 00010246
Call Trace:
 <TASK>
 ? __die_body.cold+0x19/0x2b
 ? page_fault_oops+0x15a/0x2d0
 ? exc_page_fault+0x81/0x190
 ? asm_exc_page_fault+0x26/0x30
 ? kthread+0xcf/0x100
 ? __pfx_kthread+0x10/0x10
 ? ret_from_fork+0x31/0x50
 ? __pfx_kthread+0x10/0x10
 ? ret_from_fork_asm+0x1a/0x30
 </TASK>
Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
CR2: ffffffffc0a1c00f
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Fatal exception
"""

# 5.10 (bullseye): Kdump: loaded in the CPU line, no <TASK> markers, BUG_ON.
BUGON_510 = """\
------------[ cut here ]------------
kernel BUG at /build/vendor_bugon.c:12!
invalid opcode: 0000 [#1] SMP NOPTI
CPU: 0 PID: 93 Comm: insmod Kdump: loaded Tainted: G           OE     5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:bugon_start_queue+0x5/0x10 [vendor_bugon]
Code: 00 00 00 0f 1f 44 00 00 48 8b 07 48 85 c0 74 02 c3 cc <0f> 0b 66 90 0f 1f 44 00 00
RSP: 0018:ffffa4c0c03b7cf0 EFLAGS: 00010246
Call Trace:
 bugon_init+0x11/0x1000 [vendor_bugon]
 do_one_initcall+0x44/0x1d0
 ? kmem_cache_alloc_trace+0xf5/0x200
 do_syscall_64+0x33/0x80
 entry_SYSCALL_64_after_hwframe+0x62/0xc7
Modules linked in: vendor_bugon(OE+) qemu_fw_cfg
---[ end trace 3d6e3c2a8ec5f5b5 ]---
Kernel panic - not syncing: Fatal exception
"""

GPF_61 = """\
general protection fault, probably for non-canonical address 0xdead000000000110: 0000 [#1] PREEMPT SMP NOPTI
CPU: 1 PID: 93 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
RIP: 0010:gpf_next_cookie.constprop.0+0x8/0xffb [vendor_gpf]
Call Trace:
 <TASK>
 gpf_init+0x1d/0x1000 [vendor_gpf]
 </TASK>
Modules linked in: vendor_gpf(OE+) qemu_fw_cfg
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Fatal exception
"""

WARN_61 = """\
------------[ cut here ]------------
WARNING: CPU: 1 PID: 93 at vendor_warn.c:11 warn_put_ref+0xf/0xffb [vendor_warn]
Modules linked in: vendor_warn(OE+) qemu_fw_cfg
CPU: 1 PID: 93 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
RIP: 0010:warn_put_ref+0xf/0xffb [vendor_warn]
Call Trace:
 <TASK>
 warn_init+0x16/0x1000 [vendor_warn]
 </TASK>
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: kernel: panic_on_warn set ...
"""

SYSRQ_61 = """\
sysrq: Trigger a crash
Kernel panic - not syncing: sysrq triggered crash
CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
Call Trace:
 <TASK>
 dump_stack_lvl+0x44/0x5c
 panic+0x118/0x2f4
 sysrq_handle_crash+0x16/0x20
 </TASK>
Kernel Offset: 0xe800000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)
---[ end Kernel panic - not syncing: sysrq triggered crash ]---
"""

SOFT_LOCKUP = """\
watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [spin_worker:117]
Modules linked in: vendor_spin(OE) qemu_fw_cfg
CPU: 1 PID: 117 Comm: spin_worker Tainted: G           OEL     6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
RIP: 0010:spin_forever+0x9/0x20 [vendor_spin]
Call Trace:
 <IRQ>
 ? watchdog_timer_fn+0x1a4/0x200
 </IRQ>
 <TASK>
 kthread+0xda/0x100
 </TASK>
Kernel panic - not syncing: softlockup: hung tasks
"""

HUNG_TASK = """\
INFO: task kworker/0:1:23 blocked for more than 120 seconds.
      Tainted: G           OE      6.1.0-56-cloud-amd64 #1 Debian 6.1.192-2
"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
task:kworker/0:1     state:D stack:0     pid:23    ppid:2      flags:0x00004000
Call Trace:
 <TASK>
 __schedule+0x34d/0x9e0
 schedule+0x5a/0xd0
 </TASK>
Kernel panic - not syncing: hung_task: blocked tasks
"""

MCE = """\
mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: be00000000800400
mce: [Hardware Error]: RIP !INEXACT! 10:<ffffffff8106c2f4> {native_safe_halt+0x4/0x10}
Kernel panic - not syncing: Fatal machine check
"""

PLAIN_PANIC = """\
VFS: Cannot open root device "sda1" or unknown-block(0,0): error -6
Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
CPU: 0 PID: 1 Comm: swapper/0 Not tainted 5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1
Call Trace:
 dump_stack+0x6b/0x83
 panic+0x101/0x2d7
 mount_block_root+0x2f3/0x30d
"""

OLD_40 = """\
BUG: unable to handle kernel NULL pointer dereference at 0000000000000008
IP: [<ffffffffa01c1038>] crash_init+0x38/0x1000 [crash_mod]
Oops: 0002 [#1] SMP
CPU: 3 PID: 2001 Comm: insmod Tainted: P           O    4.4.0-21-generic #37-Ubuntu
RIP: 0010:[<ffffffffa01c1038>]  [<ffffffffa01c1038>] crash_init+0x38/0x1000 [crash_mod]
Call Trace:
 [<ffffffff81002123>] do_one_initcall+0xb3/0x200
 [<ffffffff8118b8b0>] ? kmem_cache_alloc_trace+0x1d0/0x1f0
Modules linked in: crash_mod(PO+) nls_utf8 isofs [last unloaded: floppy]
---[ end trace 8a4f7b2cd0c1e0b5 ]---
"""

# Real excerpts (fixture corpus, makedumpfile --dump-dmesg with prefixes removed).
# Debian 5.10.223 (bullseye): NULL dereference; frames before the faulting one are "?".
NULL_510_REAL = """\
BUG: kernel NULL pointer dereference, address: 0000000000000000
#PF: supervisor read access in kernel mode
#PF: error_code(0x0000) - not-present page
PGD 20b6067 P4D 20b6067 PUD 2138067 PMD 0
Oops: 0000 [#1] SMP NOPTI
CPU: 0 PID: 84 Comm: insmod Tainted: G           OE     5.10.0-32-cloud-amd64 #1 Debian 5.10.223-1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:nullring_poll.constprop.0+0xc/0x1e [vendor_nullring]
Code: Unable to access opcode bytes at RIP 0xffffffffc019cfe2.
RSP: 0018:ffffb87100187df0 EFLAGS: 00000246
RAX: 0000000000000022 RBX: 0000000000000000 RCX: ffffffff90ab1808
CR2: ffffffffc019cfe2 CR3: 0000000002140000 CR4: 00000000000006b0
Call Trace:
 ? __die_body.cold+0x1a/0x1f
 ? asm_exc_page_fault+0x1e/0x30
 ? 0xffffffffc01a2000
 ? nullring_poll.constprop.0+0xc/0x1e [vendor_nullring]
 nullring_init+0x1d/0x1000 [vendor_nullring]
 do_one_initcall+0x44/0x1e0
 entry_SYSCALL_64_after_hwframe+0x67/0xd1
RIP: 0033:0x47fbe9
Code: 08 89 e8 5b 5d c3 66 2e 0f 1f 84 00 00 00 00 00 90 48 89 f8 48 89 f7 48 89 d6 48 89 ca 4d 89 c2 4d 89 c8 4c 8b 4c 24 08 0f 05 <48> 3d 01 f0 ff ff 73 01 c3 48 c7 c1 e0 ff ff ff f7 d8 64 89 01 48
RSP: 002b:00007fff86ae1268 EFLAGS: 00000246 ORIG_RAX: 0000000000000139
Modules linked in: vendor_nullring(OE+) qemu_fw_cfg
CR2: 0000000000000000
---[ end trace b5078d5a6ddcd58c ]---
"""

# Debian 6.12.118 (trixie): use after unload.
UAU_612_REAL = """\
BUG: unable to handle page fault for address: ffffffffc046b023
#PF: supervisor instruction fetch in kernel mode
#PF: error_code(0x0010) - not-present page
PGD 2c27067 P4D 2c27067 PUD 2c29067 PMD 49ae067 PTE 0
Oops: Oops: 0010 [#1] PREEMPT SMP NOPTI
CPU: 0 UID: 0 PID: 150 Comm: vdeferio8_1 Tainted: G           OE      6.12.118+deb13-cloud-amd64 #1  Debian 6.12.118-1
Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:0xffffffffc046b023
Code: Unable to access opcode bytes at 0xffffffffc046aff9.
RSP: 0018:ffffcc8a001b7ef8 EFLAGS: 00000246
CR2: ffffffffc046aff9 CR3: 0000000005252000 CR4: 00000000000006f0
Call Trace:
 <TASK>
 ? kthread+0xd2/0x100
 ? __pfx_kthread+0x10/0x10
 ? ret_from_fork+0x34/0x50
 ? __pfx_kthread+0x10/0x10
 ? ret_from_fork_asm+0x1a/0x30
 </TASK>
Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
CR2: ffffffffc046b023
---[ end trace 0000000000000000 ]---
"""

TWO_OOPSES = WARN_61.replace("Kernel panic - not syncing: kernel: panic_on_warn set ...\n", "") \
    + NULL_61


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("6.1 null deref", NULL_61, {
        "klass": "page_fault", "qualifiers": ("null_dereference",), "fault_address": 0,
        "cpu": 1, "pid": 92, "comm": "insmod", "die_reason": "Oops", "die_error_code": 0,
        "die_flags": ("PREEMPT", "SMP", "NOPTI"), "rip.function": "nullring_poll.constprop.0",
        "rip.offset": 0xC, "rip.size": 0xFFB, "rip.module": "vendor_nullring",
        "taint.letters": "OE", "kernel_release": "6.1.0-56-cloud-amd64",
        "modules": (("vendor_nullring", "OE+"), ("qemu_fw_cfg", "")), "last_unloaded": None,
        "frames": [("nullring_init", "vendor_nullring", True, "task"),
                   ("do_one_initcall", None, True, "task"),
                   ("handle_mm_fault", None, False, "task"),
                   ("entry_SYSCALL_64_after_hwframe", None, True, "task")],
        "page_fault.access": "read", "page_fault.error_code": 0,
        "code_unavailable": "Unable to access opcode bytes at 0xffffffffc0411fe7.",
        "registers.RSP": 0xFFFFCC20403F3CB8, "registers.CR2": 0xFFFFFFFFC0411FE7,
        "end_marker": "---[ end trace 0000000000000000 ]---",
        "log.panic_message": "Fatal exception", "log.kernel_offset": 0x25C00000}),
    ("6.1 use after unload", UAU_61, {
        "klass": "page_fault", "qualifiers": ("instruction_fetch",),
        "fault_address": 0xFFFFFFFFC04F400F, "rip.address": 0xFFFFFFFFC04F400F,
        "rip.function": None, "page_fault.error_flags": ("INSTR",),
        "last_unloaded": ("vendordeferio", "OE"), "modules": (("qemu_fw_cfg", ""),),
        "frames": [("kthread", None, False, "task"), ("ret_from_fork", None, False, "task")]}),
    ("6.12 use after unload", UAU_612, {
        "klass": "page_fault", "qualifiers": ("instruction_fetch",), "die_reason": "Oops",
        "die_error_code": 0x10, "uid": 0, "pid": 97, "cpu": 0, "comm": "vdeferio8_0",
        "taint.letters": "OE", "kernel_release": "6.12.118+deb13-cloud-amd64",
        "kernel_version": "#1  Debian 6.12.118-1", "last_unloaded": ("vendordeferio", "OE")}),
    ("5.10 BUG_ON", BUGON_510, {
        "klass": "kernel_bug", "bug_file": "/build/vendor_bugon.c", "bug_line": 12,
        "die_reason": "invalid opcode", "kdump_loaded": True, "cpu": 0, "pid": 93,
        "rip.function": "bugon_start_queue", "code_fault_index": 18,
        "kernel_release": "5.10.0-32-cloud-amd64",
        "frames": [("bugon_init", "vendor_bugon", True, None),
                   ("do_one_initcall", None, True, None),
                   ("kmem_cache_alloc_trace", None, False, None),
                   ("do_syscall_64", None, True, None),
                   ("entry_SYSCALL_64_after_hwframe", None, True, None)]}),
    ("6.1 GPF non-canonical", GPF_61, {
        "klass": "general_protection_fault", "qualifiers": ("non_canonical",),
        "fault_address": 0xDEAD000000000110, "rip.module": "vendor_gpf"}),
    ("6.1 WARN panic_on_warn", WARN_61, {
        "klass": "warning", "bug_file": "vendor_warn.c", "bug_line": 11,
        "warning_function.function": "warn_put_ref", "cpu": 1, "pid": 93, "comm": "insmod",
        "log.panic_message": "kernel: panic_on_warn set ..."}),
    ("6.1 sysrq", SYSRQ_61, {
        "klass": "sysrq", "pid": 1, "comm": "init", "taint.letters": "", "rip": None,
        "frames": [("dump_stack_lvl", None, True, "task"), ("panic", None, True, "task"),
                   ("sysrq_handle_crash", None, True, "task")],
        "log.klass": "sysrq", "log.kernel_offset": 0xE800000}),
    ("soft lockup", SOFT_LOCKUP, {
        "klass": "soft_lockup", "cpu": 1, "pid": 117, "comm": "spin_worker",
        "lockup_seconds": 22, "taint.letters": "OEL",
        "frames": [("watchdog_timer_fn", None, False, "irq"), ("kthread", None, True, "task")],
        "log.panic_message": "softlockup: hung tasks"}),
    ("hung task", HUNG_TASK, {
        "klass": "hung_task", "pid": 23, "comm": "kworker/0:1", "lockup_seconds": 120,
        "log.klass": "hung_task"}),
    ("machine check", MCE, {"klass": "machine_check", "log.klass": "machine_check",
                            "log.panic_message": "Fatal machine check"}),
    ("plain panic", PLAIN_PANIC, {
        "klass": "panic", "comm": "swapper/0", "pid": 1,
        "log.panic_message": "VFS: Unable to mount root fs on unknown-block(0,0)",
        "frames": [("dump_stack", None, True, None), ("panic", None, True, None),
                   ("mount_block_root", None, True, None)]}),
    ("4.4 old format", OLD_40, {
        "klass": "page_fault", "qualifiers": ("null_dereference",), "fault_address": 8,
        "taint.letters": "PO", "rip.function": "crash_init", "rip.address": 0xFFFFFFFFA01C1038,
        "last_unloaded": ("floppy", ""), "die_error_code": 2,
        "frames": [("do_one_initcall", None, True, None),
                   ("kmem_cache_alloc_trace", None, False, None)]}),
    ("5.10 null deref (real)", NULL_510_REAL, {
        "klass": "page_fault", "qualifiers": ("null_dereference",), "cpu": 0, "pid": 84,
        "comm": "insmod", "die_flags": ("SMP", "NOPTI"), "kdump_loaded": False,
        "kernel_version": "#1 Debian 5.10.223-1", "rip.size": 0x1E,
        "rip.function": "nullring_poll.constprop.0", "registers.RSP": 0xFFFFB87100187DF0,
        "registers.SS": 0x18,
        "frames": [("__die_body.cold", None, False, None),
                   ("asm_exc_page_fault", None, False, None), (None, None, False, None),
                   ("nullring_poll.constprop.0", "vendor_nullring", False, None),
                   ("nullring_init", "vendor_nullring", True, None),
                   ("do_one_initcall", None, True, None),
                   ("entry_SYSCALL_64_after_hwframe", None, True, None)],
        "modules": (("vendor_nullring", "OE+"), ("qemu_fw_cfg", "")),
        "end_marker": "---[ end trace b5078d5a6ddcd58c ]---"}),
    ("6.12 use after unload (real)", UAU_612_REAL, {
        "klass": "page_fault", "qualifiers": ("instruction_fetch",), "uid": 0, "pid": 150,
        "cpu": 0, "comm": "vdeferio8_1", "die_line": "Oops: Oops: 0010 [#1] PREEMPT SMP NOPTI",
        "die_reason": "Oops", "rip.address": 0xFFFFFFFFC046B023, "taint.letters": "OE",
        "frames": [("kthread", None, False, "task"), ("__pfx_kthread", None, False, "task"),
                   ("ret_from_fork", None, False, "task"), ("__pfx_kthread", None, False, "task"),
                   ("ret_from_fork_asm", None, False, "task")],
        "last_unloaded": ("vendordeferio", "OE")}),
]


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_oops_table(name: str, text: str, want: dict[str, Any]) -> None:
    log = parse_log(text)
    oops = log.primary
    assert oops is not None
    for key, value in want.items():
        if key.startswith("log."):
            assert _get(log, key[4:]) == value, key
        elif key == "frames":
            got = [(f.function, f.module, f.reliable, f.context) for f in oops.frames]
            assert got == value
        elif key == "modules":
            assert tuple((m.name, m.taints) for m in oops.modules or ()) == value
        elif key == "last_unloaded":
            lu = oops.last_unloaded
            assert ((lu.name, lu.taints) if lu else None) == value
        else:
            assert _get(oops, key) == value, key


def test_several_oopses_first_is_primary() -> None:
    log = parse_log(TWO_OOPSES)
    assert [o.klass for o in log.oopses] == ["warning", "page_fault"]
    assert log.primary is log.oopses[0]
    assert log.klass == "warning"
    assert log.panic_message == "Fatal exception"


@pytest.mark.parametrize(("code", "flags"), [
    (0x0000, ()), (0x0002, ("WRITE",)), (0x0010, ("INSTR",)), (0x0003, ("PROT", "WRITE")),
    (0x0015, ("PROT", "USER", "INSTR")), (0x0029, ("PROT", "RSVD", "PK")),
    (0x8000, ("SGX",)), (0x0040, ("SHSTK",)),
])
def test_pf_error_code(code: int, flags: tuple[str, ...]) -> None:
    assert decode_pf_error(code) == flags


@pytest.mark.parametrize(("text", "fn", "off", "size", "mod", "addr"), [
    ("kthread+0xda/0x100", "kthread", 0xDA, 0x100, None, None),
    ("nullring_poll.constprop.0+0xc/0xffb [vendor_nullring]", "nullring_poll.constprop.0",
     0xC, 0xFFB, "vendor_nullring", None),
    ("0xffffffffc04f400f", None, None, None, None, 0xFFFFFFFFC04F400F),
    ("__x64_sys_init_module+0x1e/0x30", "__x64_sys_init_module", 0x1E, 0x30, None, None),
])
def test_location(text: str, fn: str | None, off: int | None, size: int | None,
                  mod: str | None, addr: int | None) -> None:
    loc = parse_location(text)
    assert (loc.function, loc.offset, loc.size, loc.module, loc.address) == \
        (fn, off, size, mod, addr)


def test_code_bytes() -> None:
    log = parse_log(BUGON_510)
    o = log.primary
    assert o is not None and o.code is not None
    assert o.code[o.code_fault_index or 0 : (o.code_fault_index or 0) + 2] == b"\x0f\x0b"


def test_no_oops_at_all() -> None:
    log = parse_log("Linux version 6.1.0 (x) #1\nsome line\n")
    assert log.oopses == ()
    assert log.klass == "none"
    assert log.kernel_release == "6.1.0"


def test_module_list_continued_on_next_record() -> None:
    text = ("Oops: 0000 [#1] SMP\nCPU: 0 PID: 1 Comm: x Not tainted 6.1.0 #1\n"
            "Modules linked in: a(OE) b c\n d e(P) [last unloaded: f]\nCR2: 0000000000000000\n"
            "---[ end trace 0000000000000000 ]---\n")
    o = parse_log(text).primary
    assert o is not None
    assert [m.name for m in o.modules or ()] == ["a", "b", "c", "d", "e"]
    assert o.last_unloaded is not None and o.last_unloaded.name == "f"
