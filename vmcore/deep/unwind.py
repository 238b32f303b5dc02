"""ORC unwinding of a kernel stack in a dump, as ``arch/x86/kernel/unwind_orc.c`` does it live.

Each step looks up the ORC entry of the instruction pointer (the return address minus one,
except right after an exception frame), computes the caller's stack pointer from the entry's
base register and offset, and reads the return address (``CALL``) or a ``struct pt_regs``
(``REGS``, ``REGS_PARTIAL``: the ``[exception RIP: …]`` step of crash's ``bt``). vmlinux
entries come from the pack, a module's from its ``mod_arch_specific`` in memory.

The walk is bounded: at most :data:`MAX_FRAMES` frames; every stack pointer must lie in the
task's stack or the CPU's IRQ stack and grow within a stack; an address without ORC data (text
of an unloaded module) is stepped over by scanning a few stack words for a return address, and
the frame found that way is marked unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmcore.deep.context import Context
from vmcore.deep.modules import ModuleRecord, module_lookup, module_orc

__all__ = ["MAX_FRAMES", "MemFrame", "Unwind", "symbolize", "unwind"]

MAX_FRAMES = 256  # a 16 KiB stack overflowed by recursion holds well over 100 frames
_SCAN_WORDS = 64
# ORC_REG_* (arch/x86/include/asm/orc_types.h)
_UNDEF, _PREV_SP, _DX, _DI, _BP, _SP, _R10, _R13, _BP_IND, _SP_IND = range(10)
# struct pt_regs byte offsets (x86_64 ABI, unchanged since v4.x)
_PT = {"r15": 0, "r14": 8, "r13": 16, "r12": 24, "rbp": 32, "rbx": 40, "r11": 48, "r10": 56,
       "r9": 64, "r8": 72, "rax": 80, "rcx": 88, "rdx": 96, "rsi": 104, "rdi": 112,
       "orig_rax": 120, "rip": 128, "cs": 136, "eflags": 144, "rsp": 152, "ss": 160}
_PT_SIZE = 168
_IRET_OFFSET = _PT["rip"]
_REG_NAME = {_DX: "rdx", _DI: "rdi", _R10: "r10", _R13: "r13"}


@dataclass(frozen=True)
class MemFrame:
    """One frame: instruction ``address`` symbolized as ``function``+``offset``/``size`` in
    ``module`` (None: vmlinux); ``reliable`` False when ORC did not prove it; ``exception``
    True for an instruction pointer taken from a ``pt_regs`` (an exception or interrupt);
    ``stack`` the address the return address was read from (None for register values);
    ``context`` ``task`` or ``irq``."""

    address: int
    function: str | None
    offset: int | None
    size: int | None
    module: str | None
    reliable: bool
    exception: bool
    stack: int | None
    context: str

    def __str__(self) -> str:
        if self.function is None:
            return f"{self.address:#x}"
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.function}+{self.offset:#x}/{self.size:#x}{mod}"


@dataclass(frozen=True)
class Unwind:
    """The frames, innermost first; ``complete`` when the walk reached the stack's end (a user
    or end-of-stack frame); ``notes`` why it stopped otherwise."""

    frames: tuple[MemFrame, ...]
    complete: bool
    notes: tuple[str, ...]


def _module_of(mods: list[ModuleRecord], addr: int) -> ModuleRecord | None:
    for m in mods:
        if m.contains(addr):
            return m
    return None


def symbolize(ctx: Context, mods: list[ModuleRecord], addr: int
              ) -> tuple[str | None, int | None, int | None, str | None]:
    """(function, offset, size, module) of runtime ``addr``; function None when unknown."""
    hit = ctx.lookup(addr)
    if hit is not None:
        return hit.name, hit.offset, hit.size, None
    m = _module_of(mods, addr)
    if m is not None:
        s = module_lookup(ctx, m, addr)
        if s is not None:
            return s.name, addr - s.address, s.size, m.name
        return None, None, None, m.name
    return None, None, None, None


@dataclass
class _Orc:
    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    kind: str  # call, regs, regs_partial, end, undefined


def _decode(raw6: bytes, new_layout: bool) -> _Orc:
    sp_off = int.from_bytes(raw6[0:2], "little", signed=True)
    bp_off = int.from_bytes(raw6[2:4], "little", signed=True)
    word = int.from_bytes(raw6[4:6], "little")
    return _orc(sp_off, bp_off, word & 0xF, (word >> 4) & 0xF, word >> 8, new_layout)


def _orc(sp_off: int, bp_off: int, sp_reg: int, bp_reg: int, flags: int,
         new_layout: bool) -> _Orc:
    if new_layout:
        # v6.4 (commit fb799447ae29): type:3 (UNDEFINED, END_OF_STACK, CALL, REGS,
        # REGS_PARTIAL), signal:1.
        kind = {0: "undefined", 1: "end", 2: "call", 3: "regs", 4: "regs_partial"}.get(
            flags & 7, "undefined")
    else:
        # before: type:2 (CALL, REGS, REGS_PARTIAL), end:1; an UNDEFINED sp_reg ends the
        # stack when ``end`` is set and is an error otherwise.
        if sp_reg == _UNDEF:
            kind = "end" if flags >> 2 & 1 else "undefined"
        else:
            kind = {0: "call", 1: "regs", 2: "regs_partial"}.get(flags & 3, "undefined")
    return _Orc(sp_off, bp_off, sp_reg, bp_reg, kind)


def _lookup_orc(ctx: Context, mods: list[ModuleRecord], addr: int) -> _Orc | None:
    new_layout = ctx.pack.orc.header is not None
    if ctx.in_kernel_image(addr):
        if ctx.lookup(addr) is None:
            return None
        e = ctx.pack.orc.lookup(addr - ctx.offset)
        if e is None:
            return None
        return _orc(e.sp_offset, e.bp_offset, e.sp_reg, e.bp_reg, e.flags, new_layout)
    m = _module_of(mods, addr)
    if m is None:
        return None
    raw = module_orc(ctx, m, addr)
    return _decode(raw, new_layout) if raw is not None else None


def _is_text(ctx: Context, mods: list[ModuleRecord], addr: int) -> bool:
    return ctx.lookup(addr) is not None or _module_of(mods, addr) is not None


@dataclass
class _Walk:
    """The unwinder's registers between steps: ``ip``, ``sp``, ``bp``; ``regs`` the full set
    when the last step read a ``pt_regs`` (None otherwise); ``signal`` when ``ip`` is not a
    return address; ``exception`` when it came from a ``pt_regs``; ``reliable`` when ORC
    proved the step; ``slot`` where ``ip`` was read from."""

    ip: int
    sp: int
    bp: int
    regs: dict[str, int] | None
    signal: bool = True  # the first ip is not a return address
    exception: bool = False
    reliable: bool = True
    slot: int | None = None


class _Stop(Exception):
    """Ends the walk; ``note`` why (None: the stack's regular end)."""

    def __init__(self, note: str | None = None):
        self.note = note


def _scan(ctx: Context, mods: list[ModuleRecord], w: _Walk) -> None:
    """No unwind data (module text that is gone): the caller's return address is among the
    next stack words, as crash finds it; the frame found is a guess."""
    for i in range(_SCAN_WORDS):
        v = ctx.u64(w.sp + 8 * i)
        if v is not None and _is_text(ctx, mods, v) and _lookup_orc(ctx, mods, v - 1) is not None:
            found = w.sp + 8 * i
            w.slot, w.ip, w.sp = found, ctx.u64(found) or 0, found + 8
            w.regs, w.signal, w.exception, w.reliable = None, False, False, False
            return
    raise _Stop(f"unwind: no ORC data for {w.ip:#x} and no return address near {w.sp:#x}")


def _caller_sp(ctx: Context, orc: _Orc, w: _Walk) -> int:
    """The caller's stack pointer (the CFA) by the entry's base register and offset."""
    new_sp: int | None
    if orc.sp_reg == _SP:
        new_sp = w.sp + orc.sp_offset
    elif orc.sp_reg == _BP:
        new_sp = w.bp + orc.sp_offset
    elif orc.sp_reg == _SP_IND:
        # the offset applies after the dereference (older kernels added it before; their
        # hints use offset 0, where both agree)
        v = ctx.u64(w.sp)
        new_sp = None if v is None else v + orc.sp_offset
    elif orc.sp_reg == _BP_IND:
        new_sp = ctx.u64(w.bp + orc.sp_offset)
    elif orc.sp_reg in _REG_NAME and w.regs is not None and _REG_NAME[orc.sp_reg] in w.regs:
        new_sp = w.regs[_REG_NAME[orc.sp_reg]]
    else:
        raise _Stop(f"unwind: ORC base register {orc.sp_reg} unknown at {w.ip:#x}")
    if new_sp is None:
        raise _Stop(f"unwind: stack unreadable near {w.sp:#x}")
    return new_sp & (2**64 - 1)


def _step(ctx: Context, orc: _Orc, w: _Walk) -> None:
    """One ORC step from ``w`` to its caller: a return address (``call``) or a ``pt_regs``
    (``regs``, ``regs_partial``); raises :class:`_Stop` at the end or when memory fails."""
    cfa = new_sp = _caller_sp(ctx, orc, w)
    if orc.kind == "call":
        slot = new_sp - 8
        new_ip = ctx.u64(slot)
        if new_ip is None:
            raise _Stop(f"unwind: return address at {slot:#x} unreadable")
        w.slot, w.regs, w.signal, w.exception = slot, None, False, False
    else:
        base = new_sp if orc.kind == "regs" else new_sp - _IRET_OFFSET
        raw = ctx.read(base, _PT_SIZE)
        if raw is None:
            raise _Stop(f"unwind: pt_regs at {base:#x} unreadable")
        vals = {k: int.from_bytes(raw[o:o + 8], "little") for k, o in _PT.items()}
        if vals["cs"] & 3:
            raise _Stop()  # entered from user mode: the kernel stack ends here
        new_ip, w.slot = vals["rip"], None
        w.regs = vals if orc.kind == "regs" else None
        w.signal, w.exception = True, True
        new_sp = vals["rsp"]
    if orc.bp_reg == _PREV_SP:
        v = ctx.u64(cfa + orc.bp_offset)
        w.bp = v if v is not None else w.bp
    elif orc.bp_reg == _BP:
        v = ctx.u64(w.bp + orc.bp_offset)
        w.bp = v if v is not None else w.bp
    elif orc.bp_reg == _UNDEF and w.regs is not None and w.exception:
        w.bp = w.regs["rbp"]
    w.ip, w.sp = new_ip, new_sp
    w.reliable = True  # this step was ORC's, whatever the previous one was
    if not w.ip:
        raise _Stop(f"unwind: return address 0 read near {w.sp:#x}")


def _frame(ctx: Context, mods: list[ModuleRecord], w: _Walk, where: str) -> MemFrame:
    # a return address is symbolized by the call before it (a noreturn call may be the
    # function's last instruction), as the kernel's %pB does
    fn, off, size, mod = symbolize(ctx, mods, w.ip if w.signal else w.ip - 1)
    if off is not None and not w.signal:
        off += 1
    return MemFrame(w.ip, fn, off, size, mod, w.reliable, w.exception, w.slot, where)


def unwind(ctx: Context, mods: list[ModuleRecord], regs: dict[str, int],
           stacks: dict[str, tuple[int, int]]) -> Unwind:
    """Unwind from register set ``regs`` (``rip``, ``rsp``, ``rbp``, … as in NT_PRSTATUS)
    over ``stacks`` (name -> ``[start, end)``: ``task``, ``irq``)."""
    frames: list[MemFrame] = []
    w = _Walk(regs.get("rip", 0), regs.get("rsp", 0), regs.get("rbp", 0), dict(regs))
    visited: dict[str, int] = {}
    try:
        while len(frames) < MAX_FRAMES:
            where = next((n for n, (lo, hi) in stacks.items() if lo <= w.sp < hi), None)
            if where is None:
                if not frames:  # the registers' RIP is still worth reporting
                    fn, off, size, mod = symbolize(ctx, mods, w.ip)
                    frames.append(MemFrame(w.ip, fn, off, size, mod, False, False, None,
                                           "unknown"))
                raise _Stop(f"unwind: stack pointer {w.sp:#x} is outside the task and IRQ "
                            "stacks")
            if where in visited and w.sp < visited[where]:
                raise _Stop(f"unwind: stack pointer {w.sp:#x} went backwards")
            visited[where] = w.sp
            frames.append(_frame(ctx, mods, w, where))
            orc = _lookup_orc(ctx, mods, w.ip if w.signal else w.ip - 1)
            if orc is None:
                if not w.signal:
                    raise _Stop(f"unwind: no ORC data for {w.ip:#x}")
                _scan(ctx, mods, w)
                continue
            if orc.kind == "end":
                raise _Stop()
            if orc.kind == "undefined":
                raise _Stop(f"unwind: undefined ORC entry at {w.ip:#x}")
            _step(ctx, orc, w)
    except _Stop as stop:
        end = stop.note is None
        return Unwind(tuple(frames), end, () if end else (stop.note or "",))
    return Unwind(tuple(frames), False, (f"unwind: stopped after {MAX_FRAMES} frames",))
