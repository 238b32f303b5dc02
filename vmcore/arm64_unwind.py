"""arm64 frame-pointer unwinding over a dump's memory (no symbols needed: it yields addresses).

arm64 kernels keep frame pointers (no ORC): ``x29`` points at the current frame record
``{previous x29, return address}`` on the stack. Exception entry (``kernel_entry`` in
``arch/arm64/kernel/entry.S``, 5.x-6.x) stores a record ``{interrupted x29, interrupted pc}``
in ``pt_regs.stackframe`` and points ``x29`` at it, so walking the chain crosses the exception
frame by itself: the record's "return address" is the faulting pc (crash's exception frame),
which is why a fault in freed module text still reaches ``kthread``. The chain ends at a zero
record (the final frame of a task, in its ``pt_regs``).

Return addresses may carry a pointer-authentication code: stripped with ``KERNELPACMASK``.
A leaf function that pushed no record shows only in ``lr``: its caller is not in the chain (the
kernel's own ``Call trace:`` has the same gap). Walks are bounded: at most
:data:`MAX_FRAMES` records, each 16-byte aligned, strictly above the previous one on the same
stack, a stack switch (IRQ stack to task stack) at most :data:`MAX_STACK_SWITCHES` times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from vmcore.arm64 import Arm64Memory
from vmcore.errors import AnalyzerError

__all__ = ["MAX_FRAMES", "MAX_STACK_SWITCHES", "THREAD_SIZE", "Arm64Unwind", "unwind"]

MAX_FRAMES = 128
MAX_STACK_SWITCHES = 2
THREAD_SIZE = 16384  # 4 KiB pages without KASAN (THREAD_SHIFT 14); a walk never needs more


class Arm64Unwind(NamedTuple):
    """``pcs`` innermost first: the starting pc, then each record's return address (PAC
    stripped); ``records`` the frame-record addresses read (one fewer than ``pcs`` unless the
    walk stopped early); ``stop`` why the walk ended (``end of chain``, or the problem)."""

    pcs: tuple[int, ...]
    records: tuple[int, ...]
    stop: str


def unwind(mem: Arm64Memory, regs: Mapping[str, int]) -> Arm64Unwind:
    """Walk the frame-record chain from ``regs`` (``pc``, ``x29``; an NT_PRSTATUS or the
    registers an oops printed)."""
    strip = mem.layout.strip_pac
    pcs = [strip(regs["pc"])]
    records: list[int] = []
    fp = regs["x29"]
    switches = 0
    while True:
        if fp == 0:
            return Arm64Unwind(tuple(pcs), tuple(records), "end of chain")
        if len(records) >= MAX_FRAMES:
            return Arm64Unwind(tuple(pcs), tuple(records), f"more than {MAX_FRAMES} frames")
        if fp & 0xF:
            return Arm64Unwind(tuple(pcs), tuple(records), f"frame record {fp:#x} misaligned")
        if records and fp <= records[-1]:
            if fp // THREAD_SIZE == records[-1] // THREAD_SIZE or switches >= MAX_STACK_SWITCHES:
                return Arm64Unwind(tuple(pcs), tuple(records),
                                   f"frame record {fp:#x} not above {records[-1]:#x}")
            switches += 1
        try:
            raw = mem.read(fp, 16)
        except AnalyzerError as exc:
            return Arm64Unwind(tuple(pcs), tuple(records), f"frame record unreadable: {exc}")
        records.append(fp)
        fp, ret = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
        if ret == 0:
            return Arm64Unwind(tuple(pcs), tuple(records), "end of chain")
        pcs.append(strip(ret))
