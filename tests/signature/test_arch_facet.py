# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""The architecture is a facet, not part of the key: the same bug printed by an x86_64 and an
arm64 kernel (literal oops texts of the fixture factory's Debian 6.1 boots) gets one signature,
and the reports still say which architecture each came from."""

from __future__ import annotations

from signature import compute_signature
from signature.inputs import signature_input
from vmcore.analyze import analyze_log

# x86_64 Debian 6.1.192-2: kthread leaked past rmmod runs freed module text.
UAU_X86 = b"""\
[    4.910000] BUG: unable to handle page fault for address: ffffffffc04f400f
[    4.910000] #PF: supervisor instruction fetch in kernel mode
[    4.910000] #PF: error_code(0x0010) - not-present page
[    4.910000] Oops: 0010 [#1] PREEMPT SMP NOPTI
[    4.910000] CPU: 1 PID: 94 Comm: vdeferio8_1 Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
[    4.910000] RIP: 0010:0xffffffffc04f400f
[    4.910000] Code: Unable to access opcode bytes at 0xffffffffc04f3fe5.
[    4.910000] Call Trace:
[    4.910000]  <TASK>
[    4.910000]  ? kthread+0xda/0x100
[    4.910000]  ? ret_from_fork+0x22/0x30
[    4.910000]  </TASK>
[    4.910000] Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
[    4.910000] CR2: ffffffffc04f400f
[    4.910000] ---[ end trace 0000000000000000 ]---
[    4.910000] Kernel panic - not syncing: Fatal exception
"""

# arm64 Debian 6.1.192-2 (QEMU -M virt): the same bug; frame pointers still reach kthread.
UAU_ARM64 = b"""\
[    6.100000] Unable to handle kernel paging request at virtual address ffffafd1a8904028
[    6.100000] Mem abort info:
[    6.100000]   ESR = 0x0000000086000007
[    6.100000]   EC = 0x21: IABT (current EL), IL = 32 bits
[    6.100000]   FSC = 0x07: level 3 translation fault
[    6.100000] Internal error: Oops: 0000000086000007 [#1] SMP
[    6.100000] Modules linked in: qemu_fw_cfg [last unloaded: vendordeferio(OE)]
[    6.100000] CPU: 0 PID: 87 Comm: vdeferio8_1 Tainted: G           OE      6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
[    6.100000] pc : 0xffffafd1a8904028
[    6.100000] lr : 0xffffafd1a8904028
[    6.100000] sp : ffff80000823be50
[    6.100000] Call trace:
[    6.100000]  0xffffafd1a8904028
[    6.100000]  kthread+0xe0/0xe4
[    6.100000]  ret_from_fork+0x10/0x20
[    6.100000] Code: bad PC value
[    6.100000] ---[ end trace 0000000000000000 ]---
[    6.100000] Kernel panic - not syncing: Oops: Fatal exception
"""


def test_use_after_unload_is_one_signature_on_both_architectures() -> None:
    x86 = analyze_log(UAU_X86, source="x86").report
    arm = analyze_log(UAU_ARM64, source="arm64").report
    assert (x86.kernel.arch, arm.kernel.arch) == (None, "arm64")
    sx, sa = (compute_signature(signature_input(r)) for r in (x86, arm))
    assert sa.findings == ("use-after-module-unload(vendordeferio)",)
    assert sa.id == sx.id
    assert sa.text == "page_fault: use-after-module-unload(vendordeferio) | ?? [EO]"


def test_arm64_bare_pc_outside_the_module_area_is_no_finding() -> None:
    # a bare pc in the linear map is not module text, whatever was unloaded
    text = UAU_ARM64.replace(b"ffffafd1a8904028", b"ffff000001234568")
    r = analyze_log(text, source="arm64").report
    sig = compute_signature(signature_input(r))
    assert sig.findings == ()
    assert "kthread" in sig.frames


def test_arm64_frames_have_no_unreliable_markers() -> None:
    r = analyze_log(UAU_ARM64, source="arm64").report
    assert [f.function for f in r.frames] == [None, "kthread", "ret_from_fork"]
    assert all(f.reliable for f in r.frames)


# arm64 sysrq (6.1): panic() is the last call of sysrq_handle_crash, so its return address is
# printed as the next function's +0x0; dump_backtrace is arm64's stack dumper.
SYSRQ_ARM64 = b"""\
[   13.000000] sysrq: Trigger a crash
[   13.000000] Kernel panic - not syncing: sysrq triggered crash
[   13.000000] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-cloud-arm64 #1  Debian 6.1.192-2
[   13.000000] Hardware name: linux,dummy-virt (DT)
[   13.000000] Call trace:
[   13.000000]  dump_backtrace+0xe4/0x140
[   13.000000]  show_stack+0x20/0x30
[   13.000000]  dump_stack_lvl+0x64/0x80
[   13.000000]  dump_stack+0x18/0x34
[   13.000000]  panic+0x184/0x364
[   13.000000]  sysrq_reset_seq_param_set+0x0/0xa0
[   13.000000]  __handle_sysrq+0x90/0x19c
[   13.000000]  write_sysrq_trigger+0x7c/0xc0
[   13.000000]  proc_reg_write+0xac/0x100
[   13.000000]  vfs_write+0xdc/0x3a0
[   13.000000]  ksys_write+0x7c/0x11c
"""


def test_arm64_return_address_at_a_function_start_is_dropped() -> None:
    r = analyze_log(SYSRQ_ARM64, source="arm64").report
    assert r.kernel.arch == "arm64"
    sig = compute_signature(signature_input(r))
    assert sig.frames == ("__handle_sysrq", "write_sysrq_trigger", "proc_reg_write", "vfs_write",
                          "sys_write")  # ksys_ normalized
