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

MAX_FRAMES = 64
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


def unwind(ctx: Context, mods: list[ModuleRecord], regs: dict[str, int],
           stacks: dict[str, tuple[int, int]]) -> Unwind:
    """Unwind from register set ``regs`` (``rip``, ``rsp``, ``rbp``, … as in NT_PRSTATUS)
    over ``stacks`` (name -> ``[start, end)``: ``task``, ``irq``)."""
    notes: list[str] = []
    frames: list[MemFrame] = []
    ip, sp, bp = regs.get("rip", 0), regs.get("rsp", 0), regs.get("rbp", 0)
    cur_regs: dict[str, int] | None = dict(regs)
    signal = True  # the first ip is not a return address
    exception = False
    reliable = True
    slot: int | None = None
    visited: dict[str, int] = {}

    def stack_of(addr: int) -> str | None:
        for name, (lo, hi) in stacks.items():
            if lo <= addr < hi:
                return name
        return None

    complete = False
    while len(frames) < MAX_FRAMES:
        where = stack_of(sp)
        if where is None:
            if not frames:  # the registers' RIP is still worth reporting
                fn, off, size, mod = symbolize(ctx, mods, ip)
                frames.append(MemFrame(ip, fn, off, size, mod, False, False, None, "unknown"))
            notes.append(f"unwind: stack pointer {sp:#x} is outside the task and IRQ stacks")
            break
        if where in visited and sp < visited[where]:
            notes.append(f"unwind: stack pointer {sp:#x} went backwards")
            break
        visited[where] = sp
        # a return address is symbolized by the call before it (a noreturn call may be the
        # function's last instruction), as the kernel's %pB does
        fn, off, size, mod = symbolize(ctx, mods, ip if signal else ip - 1)
        if off is not None and not signal:
            off += 1
        frames.append(MemFrame(ip, fn, off, size, mod, reliable, exception, slot, where))
        orc = _lookup_orc(ctx, mods, ip if signal else ip - 1)
        if orc is None:
            if not signal:
                notes.append(f"unwind: no ORC data for {ip:#x}")
                break
            # No unwind data (module text that is gone): the caller's return address is among
            # the next stack words, as crash finds it; the frame found is a guess.
            found = None
            for i in range(_SCAN_WORDS):
                v = ctx.u64(sp + 8 * i)
                if v is not None and _is_text(ctx, mods, v) \
                        and _lookup_orc(ctx, mods, v - 1) is not None:
                    found = sp + 8 * i
                    break
            if found is None:
                notes.append(f"unwind: no ORC data for {ip:#x} and no return address near "
                             f"{sp:#x}")
                break
            slot = found
            ip = ctx.u64(found) or 0
            sp = found + 8
            cur_regs, signal, exception, reliable = None, False, False, False
            continue
        if orc.kind == "end":
            complete = True
            break
        if orc.kind == "undefined":
            notes.append(f"unwind: undefined ORC entry at {ip:#x}")
            break
        new_sp: int | None
        if orc.sp_reg == _SP:
            new_sp = sp + orc.sp_offset
        elif orc.sp_reg == _BP:
            new_sp = bp + orc.sp_offset
        elif orc.sp_reg == _SP_IND:
            # the offset applies after the dereference (older kernels added it before; their
            # hints use offset 0, where both agree)
            v = ctx.u64(sp)
            new_sp = None if v is None else v + orc.sp_offset
        elif orc.sp_reg == _BP_IND:
            new_sp = ctx.u64(bp + orc.sp_offset)
        elif orc.sp_reg in _REG_NAME and cur_regs is not None \
                and _REG_NAME[orc.sp_reg] in cur_regs:
            new_sp = cur_regs[_REG_NAME[orc.sp_reg]]
        else:
            notes.append(f"unwind: ORC base register {orc.sp_reg} unknown at {ip:#x}")
            break
        if new_sp is None:
            notes.append(f"unwind: stack unreadable near {sp:#x}")
            break
        new_sp &= 2**64 - 1
        cfa = new_sp
        if orc.kind == "call":
            slot = new_sp - 8
            new_ip = ctx.u64(slot)
            if new_ip is None:
                notes.append(f"unwind: return address at {slot:#x} unreadable")
                break
            cur_regs, signal, exception = None, False, False
        else:
            base = new_sp if orc.kind == "regs" else new_sp - _IRET_OFFSET
            raw = ctx.read(base, _PT_SIZE)
            if raw is None:
                notes.append(f"unwind: pt_regs at {base:#x} unreadable")
                break
            vals = {k: int.from_bytes(raw[o:o + 8], "little") for k, o in _PT.items()}
            if vals["cs"] & 3:
                complete = True  # entered from user mode: the kernel stack ends here
                break
            new_ip, slot = vals["rip"], None
            cur_regs = vals if orc.kind == "regs" else None
            signal, exception = True, True
            new_sp = vals["rsp"]
        if orc.bp_reg == _PREV_SP:
            v = ctx.u64(cfa + orc.bp_offset)
            bp = v if v is not None else bp
        elif orc.bp_reg == _BP:
            v = ctx.u64(bp + orc.bp_offset)
            bp = v if v is not None else bp
        elif orc.bp_reg == _UNDEF and cur_regs is not None and exception:
            bp = cur_regs["rbp"]
        ip, sp = new_ip, new_sp
        reliable = True  # this step was ORC's, whatever the previous one was
        if not ip:
            notes.append(f"unwind: return address 0 read near {sp:#x}")
            break
    else:
        notes.append(f"unwind: stopped after {MAX_FRAMES} frames")
    return Unwind(tuple(frames), complete, tuple(notes))
