"""arm64 stacks of a crashed task for deep analysis: the frame-record walk of
:mod:`vmcore.arm64_unwind`, named with a symbol pack, placed on the task and IRQ stacks, with
the exception frames (``pt_regs``) marked.

Exception entry (``kernel_entry`` in ``arch/arm64/kernel/entry.S``, 5.x-6.x) stores the record
``{interrupted x29, interrupted pc}`` in ``pt_regs.stackframe`` and points ``x29`` at it. A
record is that one when the ``struct pt_regs`` around it holds the same ``x29`` and ``pc``; its
"return address" is then the interrupted pc (crash's exception frame): named by the pc itself,
not by the call before it. Entry from user mode stores a zero record, which ends the chain
(``stackframe`` offset from the pack's BTF; without it no frame is marked as an exception).

Every record must lie on the task stack or the CPU's IRQ stack (the IRQ entry switches from the
task stack to the IRQ stack and records the interrupted ``x29``, so a walk moves from ``irq``
to ``task``, never back), 16-byte aligned, above the previous record of the same stack; at
most :data:`MAX_FRAMES` frames.
"""

from __future__ import annotations

from collections.abc import Callable

from vmcore.deep.context import Context
from vmcore.deep.modules import ModuleRecord
from vmcore.deep.unwind import MemFrame, Unwind, symbolize

__all__ = ["MAX_FRAMES", "arm64_unwind"]

MAX_FRAMES = 64
# struct pt_regs starts with user_pt_regs (uapi, stable): x0-x30, sp, pc, pstate.
_PT_X29, _PT_PC = 29 * 8, 32 * 8
_PT_USER_SIZE = 34 * 8


class _Stop(Exception):
    """Ends the walk; ``note`` why (None: the chain's regular end)."""

    def __init__(self, note: str | None = None):
        self.note = note


def _frame(ctx: Context, mods: list[ModuleRecord], pc: int, *, ret: bool, exception: bool,
           slot: int | None, where: str) -> MemFrame:
    # a return address is named by the call before it (a noreturn call may be the function's
    # last instruction), as the kernel's %pB and drgn do
    fn, off, size, mod = symbolize(ctx, mods, pc - 1 if ret else pc)
    if off is not None and ret:
        off += 1
    return MemFrame(pc, fn, off, size, mod, fn is not None or mod is not None or exception,
                    exception, slot, where)


def _is_exception(ctx: Context, sf_off: int | None, record: int, fp: int, pc: int,
                  strip: Callable[[int], int]) -> bool:
    """Whether the record at ``record`` (holding ``fp``, ``pc``) is a ``pt_regs.stackframe``."""
    if sf_off is None or record < sf_off:
        return False
    raw = ctx.read(record - sf_off, _PT_USER_SIZE)
    if raw is None:
        return False
    x29 = int.from_bytes(raw[_PT_X29:_PT_X29 + 8], "little")
    rpc = int.from_bytes(raw[_PT_PC:_PT_PC + 8], "little")
    return x29 == fp and strip(rpc) == strip(pc)


def arm64_unwind(ctx: Context, mods: list[ModuleRecord], regs: dict[str, int],
                 stacks: dict[str, tuple[int, int]], strip: Callable[[int], int]) -> Unwind:
    """Unwind from ``regs`` (``pc``, ``sp``, ``x29`` of an arm64 NT_PRSTATUS) over ``stacks``
    (name -> ``[start, end)``: ``task``, ``irq``); ``strip`` removes pointer-authentication
    bits from return addresses."""

    def stack_of(addr: int) -> str | None:
        return next((n for n, (lo, hi) in stacks.items() if lo <= addr < hi), None)

    sf_off = ctx.off("pt_regs", "stackframe")
    pc, fp = strip(regs.get("pc", 0)), regs.get("x29", 0)
    frames = [_frame(ctx, mods, pc, ret=False, exception=False, slot=None,
                     where=stack_of(regs.get("sp", 0)) or "unknown")]
    last: dict[str, int] = {}
    left: set[str] = set()
    current: str | None = None
    try:
        while True:
            if fp == 0:
                raise _Stop()
            if len(frames) >= MAX_FRAMES:
                raise _Stop(f"unwind: stopped after {MAX_FRAMES} frames")
            if fp & 0xF:
                raise _Stop(f"unwind: frame record {fp:#x} misaligned")
            where = stack_of(fp)
            if where is None:
                raise _Stop(f"unwind: frame record {fp:#x} is outside the task and IRQ stacks")
            if where in left or (where in last and fp <= last[where]):
                raise _Stop(f"unwind: frame record {fp:#x} went backwards")
            if current is not None and current != where:
                left.add(current)
            current, last[where] = where, fp
            raw = ctx.read(fp, 16)
            if raw is None:
                raise _Stop(f"unwind: frame record {fp:#x} unreadable")
            nfp, ret = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
            if ret == 0:
                raise _Stop()  # the final record (a task's first frame, or entry from user)
            exc = _is_exception(ctx, sf_off, fp, nfp, ret, strip)
            frames.append(_frame(ctx, mods, strip(ret), ret=not exc, exception=exc,
                                 slot=None if exc else fp + 8, where=where))
            fp = nfp
    except _Stop as stop:
        end = stop.note is None
        return Unwind(tuple(frames), end, () if end else (stop.note or "",))
