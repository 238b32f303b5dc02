"""Loaded modules from memory: the ``modules`` list, their address ranges, in-memory symbols
(``mod_kallsyms``) and ORC tables, and the last unloaded module's name."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from vmcore.deep.context import Context
from vmcore.taint import TAINT_FLAGS

__all__ = ["MAX_MODULES", "ModuleRecord", "ModuleSymbol", "last_unloaded", "module_layout",
           "read_modules"]

MAX_MODULES = 4096
_NAME_LEN = 56  # MODULE_NAME_LEN on 64-bit
_MAX_SYMS = 100_000
_ALIASES = frozenset({"init_module", "cleanup_module"})
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_STT_FUNC = 2
_MAX_ORCS = 1_000_000
# module_memory types (v6.4+, include/linux/module.h): the core ones and the init ones.
_MOD_CORE = (0, 1, 2, 3)  # TEXT, DATA, RODATA, RO_AFTER_INIT
_MOD_INIT = (4, 5, 6)  # INIT_TEXT, INIT_DATA, INIT_RODATA
# struct mod_arch_specific (arch/x86/include/asm/module.h) with CONFIG_UNWINDER_ORC:
# num_orcs (u32), orc_unwind_ip (int *), orc_unwind (struct orc_entry *); not in the pack's
# BTF list, and unchanged since v4.14.
_ARCH_NUM_ORCS, _ARCH_ORC_IP, _ARCH_ORC = 0, 8, 16


@dataclass(frozen=True)
class ModuleSymbol:
    """A module symbol from memory: ``address``, ``size`` in bytes, ``name``."""

    name: str
    address: int
    size: int


@dataclass
class ModuleRecord:
    """A ``struct module``: ``address``, ``name``, ``base`` (core text) and ``size`` in bytes
    of its core memory, ``taints`` letters, ``ranges`` ``[start, end)`` of every core and init
    region."""

    address: int
    name: str
    base: int
    size: int
    taints: str
    ranges: tuple[tuple[int, int], ...]
    _syms: list[ModuleSymbol] | None = field(default=None, repr=False)
    _orc: tuple[list[int], bytes] | None = field(default=None, repr=False)

    def contains(self, addr: int) -> bool:
        return any(s <= addr < e for s, e in self.ranges)


def module_layout(ctx: Context, mod: int) -> tuple[int, int, tuple[tuple[int, int], ...]] | None:
    """(core base, core size, ``[start, end)`` of each non-empty region) of the ``struct
    module`` at ``mod``, from its ``mem[]`` (v6.4+) or its core and init layouts; None when
    unreadable."""
    ranges: list[tuple[int, int]] = []
    mem_off = ctx.off("module", "mem")
    if mem_off is not None and "module_memory" in ctx.pack.types:
        # v6.4 (commit ac3b43283923) replaced core_layout/init_layout with mem[] regions.
        esize = ctx.pack.types["module_memory"].size
        bo = ctx.off("module_memory", "base")
        so = ctx.off("module_memory", "size")
        if bo is None or so is None:
            return None
        base = size = 0
        for i in _MOD_CORE + _MOD_INIT:
            b = ctx.u64(mod + mem_off + i * esize + bo)
            n = ctx.u32(mod + mem_off + i * esize + so)
            if b is None or n is None:
                return None
            if i == 0:
                base = b
            if i in _MOD_CORE:
                size += n
            if b and n:
                ranges.append((b, b + n))
        return base, size, tuple(ranges)
    out: list[tuple[int, int]] = []
    for member in ("core_layout", "init_layout"):
        bo = ctx.off("module", f"{member}.base")
        so = ctx.off("module", f"{member}.size")
        if bo is None or so is None:
            return None
        b = ctx.u64(mod + bo)
        n = ctx.u32(mod + so)
        if b is None or n is None:
            return None
        out.append((b, n))
    (base, size), (ibase, isize) = out
    if base and size:
        ranges.append((base, base + size))
    if ibase and isize:
        ranges.append((ibase, ibase + isize))
    return base, size, tuple(ranges)


def _taints(mask: int) -> str:
    return "".join(f.letter for f in TAINT_FLAGS if mask >> f.bit & 1)


def read_modules(ctx: Context) -> tuple[list[ModuleRecord], bool]:
    """The ``modules`` list in list order, and whether it was read completely (False: a
    pointer was unreadable, the list cycled, or it exceeded :data:`MAX_MODULES`)."""
    head = ctx.symbol("modules")
    lo = ctx.off("module", "list")
    no = ctx.off("module", "name")
    to = ctx.off("module", "taints")
    if head is None or lo is None or no is None:
        ctx.notes.append("modules: no modules list or struct module layout in the pack")
        return [], False
    out: list[ModuleRecord] = []
    for node in ctx.list_nodes(head, MAX_MODULES):
        if node is None:
            ctx.notes.append("modules: list broken (unreadable, cyclic or too long)")
            return out, False
        mod = node - lo
        name = ctx.cstr(mod + no, _NAME_LEN)
        lay = module_layout(ctx, mod)
        if name is None or lay is None:
            ctx.notes.append(f"modules: module at {mod:#x} unreadable")
            return out, False
        mask = ctx.u64(mod + to) if to is not None else 0
        out.append(ModuleRecord(mod, name, lay[0], lay[1], _taints(mask or 0), lay[2]))
    return out, True


def last_unloaded(ctx: Context) -> str | None:
    """Name of the last unloaded module ('' when none was). The variable was a
    ``char[MODULE_NAME_LEN+1]`` and became ``struct { char name[]; char taints[]; }`` in v6.1
    (commit 6f1dae1d84d2); both start with the NUL-terminated name."""
    addr = ctx.symbol("last_unloaded_module")
    if addr is None:
        return None
    return ctx.cstr(addr, _NAME_LEN)


def module_symbols(ctx: Context, mod: ModuleRecord) -> list[ModuleSymbol]:
    """The module's symbols from ``module->kallsyms`` (sorted by address; [] unreadable)."""
    if mod._syms is not None:
        return mod._syms
    syms: list[ModuleSymbol] = []
    mod._syms = syms
    ko = ctx.off("module", "kallsyms")
    if ko is None:
        return syms
    ks = ctx.u64(mod.address + ko)
    if not ks:
        return syms
    st = ctx.member_u64(ks, "mod_kallsyms", "symtab")
    no = ctx.off("mod_kallsyms", "num_symtab")
    strtab = ctx.member_u64(ks, "mod_kallsyms", "strtab")
    num = ctx.u32(ks + no) if no is not None else None
    if not st or not strtab or num is None or num > _MAX_SYMS:
        return syms
    raw = ctx.read(st, num * _SYM.size)
    if raw is None:
        return syms
    for i in range(num):
        st_name, info, _other, shndx, value, size = _SYM.unpack_from(raw, i * _SYM.size)
        if info & 0xF != _STT_FUNC or shndx == 0 or not mod.contains(value):
            continue
        name = ctx.cstr(strtab + st_name, 128)
        if name:
            syms.append(ModuleSymbol(name, value, size))
    syms.sort(key=lambda s: s.address)
    return syms


def module_lookup(ctx: Context, mod: ModuleRecord, addr: int) -> ModuleSymbol | None:
    """The function symbol of ``mod`` holding ``addr``."""
    best = None
    for s in module_symbols(ctx, mod):
        if s.address > addr:
            break
        # module_init()/module_exit() add init_module/cleanup_module aliases of the real
        # function; the real name says more
        if addr < s.address + max(s.size, 1) and (
                best is None or best.address != s.address or best.name in _ALIASES):
            best = s
    return best


def module_orc(ctx: Context, mod: ModuleRecord, addr: int) -> bytes | None:
    """The 6-byte ORC entry of ``mod`` governing ``addr`` (None: none or unreadable)."""
    if mod._orc is None:
        mod._orc = ([], b"")
        ao = ctx.off("module", "arch")
        if ao is None:
            return None
        n = ctx.u32(mod.address + ao + _ARCH_NUM_ORCS)
        ip_tab = ctx.u64(mod.address + ao + _ARCH_ORC_IP)
        ent_tab = ctx.u64(mod.address + ao + _ARCH_ORC)
        if not n or not ip_tab or not ent_tab or n > _MAX_ORCS:
            return None
        ips_raw = ctx.read(ip_tab, 4 * n)
        ents = ctx.read(ent_tab, 6 * n)
        if ips_raw is None or ents is None:
            return None
        # .orc_unwind_ip entries are relative to their own address; the kernel sorts both
        # arrays together when it loads the module.
        rel = struct.unpack(f"<{n}i", ips_raw)
        ips = [(ip_tab + 4 * i + r) & (2**64 - 1) for i, r in enumerate(rel)]
        mod._orc = (ips, ents)
    ips, ents = mod._orc
    if not ips:
        return None
    i = bisect.bisect_right(ips, addr) - 1
    if i < 0:
        return None
    return ents[6 * i : 6 * i + 6]


# struct bug_entry on x86_64 (CONFIG_GENERIC_BUG_RELATIVE_POINTERS, CONFIG_DEBUG_BUGVERBOSE):
# int bug_addr_disp, int file_disp (both relative to the field), u16 line, u16 flags.
_BUG = struct.Struct("<iiHH")
_MAX_BUGS = 200_000


def _bug_file(ctx: Context, entry: int, file_disp: int) -> int:
    """The address of a bug entry's file name. Newer kernels make ``file_disp`` relative to the
    field itself (``&bug->file_disp + file_disp``), older ones (5.10) to the entry
    (``bug + file_disp``). The names are packed NUL-terminated strings, so the field-relative
    reading of an entry-relative table lands 4 bytes inside a name, after a non-NUL byte: that
    byte tells the layouts apart without a version table."""
    field = (entry + 4 + file_disp) & (2**64 - 1)
    before = ctx.read(field - 1, 1)
    return field if before in (None, b"\0") else (entry + file_disp) & (2**64 - 1)


def bug_location(ctx: Context, mods: list[ModuleRecord], addr: int) -> str | None:
    """``file:line`` of the BUG()/WARN() whose trapping instruction is at ``addr``, from the
    bug table in memory (the module's ``bug_table`` or vmlinux's ``__bug_table``)."""
    table: int | None = None
    count = 0
    if ctx.in_kernel_image(addr):
        start, stop = ctx.symbol("__start___bug_table"), ctx.symbol("__stop___bug_table")
        if start is not None and stop is not None and stop > start:
            table, count = start, (stop - start) // _BUG.size
    else:
        mod = next((m for m in mods if m.contains(addr)), None)
        to = ctx.off("module", "bug_table")
        no = ctx.off("module", "num_bugs")
        if mod is not None and to is not None and no is not None:
            table, count = ctx.u64(mod.address + to), ctx.u32(mod.address + no) or 0
    if not table or not 0 < count <= _MAX_BUGS:
        return None
    raw = ctx.read(table, count * _BUG.size)
    if raw is None:
        return None
    for i in range(count):
        disp, file_disp, line, _flags = _BUG.unpack_from(raw, i * _BUG.size)
        entry = table + i * _BUG.size
        if (entry + disp) & (2**64 - 1) == addr:
            name = ctx.cstr(_bug_file(ctx, entry, file_disp), 256)
            return f"{name}:{line}" if name else None
    return None
