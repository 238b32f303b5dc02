"""arm64 frame-pointer unwinding: bounded walks on synthetic stacks, and on the real arm64
dumps the walk from the crashed CPU's NT_PRSTATUS against drgn's stack trace (drgn unwinds
with the vmlinux's DWARF CFI; ours uses frame records only, named here with the -dbg vmlinux's
symbol table for the comparison)."""

from __future__ import annotations

import bisect
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from vmcore.arm64 import Arm64Memory
from vmcore.arm64_unwind import MAX_FRAMES, unwind
from vmcore.errors import PageExcluded
from vmcore.formats import open_dump
from vmcore.notes import parse_prstatus
from vmcore.source import LocalFileSource
from vmcore.vmcoreinfo import parse_vmcoreinfo

from .conftest import CORPUS, Case, real_cases
from .test_arm64 import _info

STACK = 0xFFFF000002000000  # in the linear map: PHYS_OFFSET + 0x2000000
PHYS = 0x42000000


def _mem(records: dict[int, tuple[int, int]]) -> Arm64Memory:
    buf = bytearray(0x8000)
    for at, (fp, ret) in records.items():
        struct.pack_into("<QQ", buf, at - STACK, fp, ret)

    def read(a: int, n: int) -> bytes:
        if not PHYS <= a < PHYS + len(buf):
            raise PageExcluded("not in the dump", offset=a, space="phys")
        return bytes(buf[a - PHYS : a - PHYS + n])

    return Arm64Memory(read, _info())


def test_chain_with_pac_and_exception_record() -> None:
    r1, r2, r3 = STACK + 0x100, STACK + 0x180, STACK + 0x400
    signed = 0x2FE0CEC5F4D70644  # PAC in bits 63:48 of a kernel return address
    mem = _mem({r1: (r2, signed), r2: (r3, 0xFFFFAFD1A8904028), r3: (0, 0)})
    u = unwind(mem, {"pc": 0xFFFFCEC5F4D705C0, "x29": r1})
    assert u.pcs == (0xFFFFCEC5F4D705C0, 0xFFFFCEC5F4D70644, 0xFFFFAFD1A8904028)
    assert u.records == (r1, r2, r3) and u.stop == "end of chain"


@pytest.mark.parametrize(("records", "start", "says"), [
    ({STACK + 0x100: (STACK + 0x100, 0xFFFF800008000000)}, STACK + 0x100, "not above"),
    ({STACK + 0x100: (STACK + 0x0F0, 0xFFFF800008000000)}, STACK + 0x100, "not above"),
    ({}, STACK + 0x108, "misaligned"),
    ({STACK + 0x100: (0xFFFF7FFFFFFFF000, 0xFFFF800008000000)}, STACK + 0x100, "unreadable"),
])
def test_bad_chains_stop_with_a_reason(records: dict[int, tuple[int, int]], start: int,
                                       says: str) -> None:
    u = unwind(_mem(records), {"pc": 0xFFFF800008001000, "x29": start})
    assert says in u.stop


def test_walk_is_bounded() -> None:
    chain = {STACK + 0x10 * i: (STACK + 0x10 * (i + 1), 0xFFFF800008000000 + i)
             for i in range(MAX_FRAMES + 10)}
    u = unwind(_mem(chain), {"pc": 0xFFFF800008001000, "x29": STACK})
    assert len(u.records) == MAX_FRAMES and "more than" in u.stop


def _text_symbols(vmlinux: Path) -> tuple[list[int], list[str]]:
    out = subprocess.run(["nm", "-n", str(vmlinux)], capture_output=True, text=True,
                         check=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWw" and not parts[2].startswith("$"):
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_unwind_matches_drgn(case: Case) -> None:
    vmlinux = CORPUS.parent / "kernels" / case.manifest["kernel_release"] / "vmlinux"
    if not vmlinux.exists() or not shutil.which("nm"):
        pytest.skip(f"no -dbg vmlinux at {vmlinux} (the fixture factory fetches it)")
    drgn = case.oracle("drgn_bt") or ""
    with LocalFileSource(case.dump) as src:
        dump = open_dump(src)
        info = parse_vmcoreinfo(dump.vmcoreinfo_blob or b"")
        mem = Arm64Memory(dump.read_phys, info)
        (cpu,) = parse_prstatus(dump.notes, "arm64")
        u = unwind(mem, cpu.regs)
    assert u.stop == "end of chain"
    addrs, names = _text_symbols(vmlinux.resolve())
    koff = info.kernel_offset or 0
    ours = []
    for i, pc in enumerate(u.pcs):
        at = pc - koff - (1 if i else 0)  # a return address names its call's function
        k = bisect.bisect_right(addrs, at) - 1
        ours.append(names[k] if k >= 0 and at - addrs[k] < 0x100000 else f"{pc:#x}")
    theirs = re.findall(r"^#\d+\s+(\S+)", drgn, re.M)
    theirs = [t.split("+")[0] for t in theirs]
    # the symbol table names GCC clones (el0_svc_common.constprop.0), DWARF the function
    ours = [re.sub(r"(\.(constprop|isra|part|cold)(\.\d+)?)+$", "", o) for o in ours]
    # drgn adds inlined frames; every frame of ours is in drgn's, in the same order
    it = iter(theirs)
    assert all(any(t == o for t in it) for o in ours), "\n".join(map(str, (ours, theirs)))
    assert len(ours) >= 10, ours
    if case.manifest["scenario"] == "uau":  # through the exception into freed text, to kthread
        bare = [o for o in ours if o.startswith("0x")]
        assert len(bare) == 1 and bare[0] in theirs
        assert ours[-2:] == ["kthread", "ret_from_fork"]
