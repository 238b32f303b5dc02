"""Deep analysis of arm64 dumps: the crashed task, its frame-pointer stack, modules and
findings, as :func:`vmcore.deep.analyze_memory` does for x86_64.

What differs from x86_64:

- Addresses. Every vmlinux symbol, per-cpu variables included, is in the kernel image and
  moves with the KASLR slide (``KERNELOFFSET``); per-cpu copies are at the variable's runtime
  address plus ``__per_cpu_offset[cpu]``. The image is ``[_text, _end)`` of the pack.
- ``current``. arm64 keeps it in ``sp_el0``, which no dump records; ``__entry_task`` (a per-cpu
  copy written at every context switch, ``arch/arm64/kernel/process.c``, 4.10+) names it.
- Stacks. The task stack (``THREAD_SIZE`` 16 KiB with 4 KiB pages, no KASAN) and the CPU's IRQ
  stack (``irq_stack_ptr``, the same size); unwinding by frame records
  (:mod:`vmcore.arm64_stack`), no ORC.
- Symbols from the dump itself (:func:`dump_symbols_arm64`): kallsyms and BTF are
  arch-neutral; there is no ORC to miss. Their addresses are the runtime ones (slide 0).
  Debian's arm64 kallsyms names functions only; the data symbols come from the export
  table, BTF and the vmalloc areas (:mod:`vmcore.arm64_dumpsyms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from vmcore.arm64 import Arm64Memory
from vmcore.arm64_dumpsyms import functions_only_symbols
from vmcore.arm64_stack import arm64_unwind
from vmcore.deep.context import Context
from vmcore.deep.findings import Facts, find
from vmcore.deep.match import kaslr_offset, match_pack
from vmcore.deep.modules import bug_location as bug_table_location
from vmcore.deep.modules import last_unloaded, read_modules
from vmcore.deep.run import MemoryAnalysis
from vmcore.deep.tasks import TaskRecord, list_tasks, read_task
from vmcore.deep.unwind import MemFrame
from vmcore.dumpsyms import DumpSymbols, symbols_from_dump
from vmcore.findings import ARM64_MODULES_VADDR
from vmcore.kallsyms import read_kallsyms
from vmcore.notes import PrStatus
from vmcore.oops_records import CodeLocation
from vmcore.symbols import KernelSymbols
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import KernelMemory

__all__ = ["THREAD_SIZE", "Arm64Context", "analyze_memory_arm64", "dump_symbols_arm64"]

THREAD_SIZE = 16384  # THREAD_SHIFT 14: 4 KiB pages without KASAN; IRQ_STACK_SIZE the same


@dataclass
class Arm64Context(Context):
    """:class:`Context` with arm64 addresses: ``image`` is ``[start, end)`` of the kernel image
    at runtime."""

    image: tuple[int, int] = (0, 0)

    def symbol(self, name: str) -> int | None:
        addr = self.link_address(name)
        return None if addr is None else (addr + self.offset) & (2**64 - 1)

    def in_kernel_image(self, addr: int) -> bool:
        return self.image[0] <= addr < self.image[1]

    def per_cpu(self, name: str, cpu: int) -> int | None:
        var = self.symbol(name)
        offsets = self.symbol("__per_cpu_offset")
        if var is None or offsets is None:
            return None
        base = self.u64(offsets + 8 * cpu)
        return None if base is None else (var + base) & (2**64 - 1)


def _context(mem: Arm64Memory, pack: KernelSymbols, offset: int) -> Arm64Context:
    ctx = Arm64Context(cast(KernelMemory, mem), pack, offset)
    # a kallsyms of functions only starts at _stext: the image header before it holds no code
    lo, hi = ctx.symbol("_text") or ctx.symbol("_stext"), ctx.symbol("_end")
    if lo is None or hi is None or not lo < hi:
        ctx.notes.append("symbols: no _text/_end, the kernel image is unknown")
    else:
        ctx.image = (lo, hi)
    return ctx


def _stacks(ctx: Context, cpu: int, task: TaskRecord) -> dict[str, tuple[int, int]]:
    stacks: dict[str, tuple[int, int]] = {}
    if task.stack:
        stacks["task"] = (task.stack, task.stack + THREAD_SIZE)
    addr = ctx.per_cpu("irq_stack_ptr", cpu)
    irq = ctx.u64(addr) if addr is not None else None
    if irq:
        stacks["irq"] = (irq, irq + THREAD_SIZE)
    return stacks


def _crashed(ctx: Context, cpus: list[PrStatus], candidates: list[int]
             ) -> tuple[int | None, TaskRecord | None, dict[str, int] | None,
                        dict[str, tuple[int, int]]]:
    """The crashing CPU, its task, the registers whose stack pointer is on that task's or
    that CPU's IRQ stack (note order and recorded pids differ between kdump and QEMU)."""
    cpu = task = regs = None
    stacks: dict[str, tuple[int, int]] = {}
    for c in candidates:
        addr = ctx.per_cpu("__entry_task", c)
        current = ctx.u64(addr) if addr is not None else None
        if not current:
            continue
        t = read_task(ctx, current)
        s = _stacks(ctx, c, t)
        r = next((p.regs for p in cpus
                  if any(lo <= p.regs.get("sp", 0) < hi for lo, hi in s.values())), None)
        if cpu is None or r is not None:
            cpu, task, regs, stacks = c, t, r, s
        if r is not None:
            break
    return cpu, task, regs, stacks


def analyze_memory_arm64(mem: Arm64Memory, info: VmcoreInfo, pack: KernelSymbols,
                         cpus: list[PrStatus], *, oops_cpu: int | None = None,
                         klass: str = "unknown", fault_address: int | None = None,
                         bug_location: str | None = None,
                         rip: CodeLocation | None = None) -> MemoryAnalysis:
    """:func:`vmcore.deep.analyze_memory` for arm64 (``cpus`` with arm64 registers). Raises
    :class:`~vmcore.deep.match.PackMismatch` only."""
    from_dump = getattr(pack, "from_dump", False)
    matched_by = "dump" if from_dump else match_pack(info, pack, cast(KernelMemory, mem))
    # the dump's own symbols are at runtime addresses (dump_symbols_arm64)
    ctx = _context(mem, pack, 0 if from_dump else kaslr_offset(info))
    notes = ctx.notes
    mods, mods_ok = read_modules(ctx)
    lu = last_unloaded(ctx)
    tasks, tasks_ok = list_tasks(ctx)
    candidates = [oops_cpu] if oops_cpu is not None else list(range(len(cpus) or 1))
    cpu, task, regs, stacks = _crashed(ctx, cpus, candidates)
    frames: tuple[MemFrame, ...] = ()
    complete = False
    if task is None:
        notes.append("task: no readable current task (__entry_task) on the crashing CPU")
    elif regs is None:
        notes.append(f"unwind: no CPU registers on the stack of task {task.address:#x}")
    else:
        uw = arm64_unwind(ctx, mods, regs, stacks, mem.layout.strip_pac)
        frames, complete = uw.frames, uw.complete
        notes.extend(uw.notes)
    facts = Facts(frames, tuple(mods), lu, task, klass, fault_address, bug_location,
                  lambda fr: _line_of(ctx, fr), ARM64_MODULES_VADDR,
                  lambda fr: bug_table_location(ctx, mods, fr.address),
                  ctx.in_kernel_image, rip)
    findings = find(facts, notes)
    partial = not (complete and mods_ok and tasks_ok and task is not None) or bool(notes)
    return MemoryAnalysis(pack.build_id, matched_by, kaslr_offset(info), cpu, task, frames,
                          complete, tuple(mods), mods_ok, lu, findings, partial, tuple(notes),
                          tuple(tasks), tasks_ok)


def _line_of(ctx: Context, fr: MemFrame) -> str | None:
    if fr.module is not None or not ctx.in_kernel_image(fr.address):
        return None
    li = ctx.pack.line_for(fr.address - ctx.offset)
    return f"{li.file}:{li.line}" if li is not None else None


def dump_symbols_arm64(mem: Arm64Memory, info: VmcoreInfo) -> DumpSymbols:
    """The dump's own kallsyms and BTF (:func:`vmcore.dumpsyms.symbols_from_dump`), at runtime
    addresses: the decoder subtracts the slide from x86_64 image addresses only, so the slide
    is left at 0 here and the analysis reads them unrelocated. A kallsyms of functions only
    (no ``CONFIG_KALLSYMS_ALL``: Debian's arm64 kernels) has its data symbols found elsewhere
    in memory (:mod:`vmcore.arm64_dumpsyms`). arm64 has no ORC: its absence is no note.
    Raises :class:`~vmcore.errors.BadKallsyms`."""
    ks = read_kallsyms(mem.read, dict(info.symbols), 0)
    if ks.address_of("init_task") is None:
        return functions_only_symbols(mem, info, ks)
    own = symbols_from_dump(mem.read, info._replace(kernel_offset=0), ks)
    return DumpSymbols(own.build_id, own.meta, own.symbols, own.types, own.orc,
                       tuple(n for n in own.notes if not n.startswith("orc:")))

