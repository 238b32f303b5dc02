"""One memory analysis: match the pack, find the crashed task and its registers, read the
modules, unwind, and apply the finding rules. Never raises for bad memory: what fails becomes
a note and the result is flagged partial."""

from __future__ import annotations

from dataclasses import dataclass

from vmcore.deep.context import Context
from vmcore.deep.findings import Facts, find
from vmcore.deep.match import kaslr_offset, match_pack
from vmcore.deep.modules import ModuleRecord, last_unloaded, read_modules
from vmcore.deep.modules import bug_location as bug_table_location
from vmcore.deep.tasks import (
    THREAD_SIZE,
    TaskRecord,
    current_task,
    irq_stack,
    list_tasks,
    read_task,
)
from vmcore.deep.unwind import MemFrame, unwind
from vmcore.notes import PrStatus
from vmcore.oops_records import CodeLocation
from vmcore.report import FindingInfo, MemFrameInfo, MemoryInfo, ModuleEntry
from vmcore.symbols import KernelSymbols
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import START_KERNEL_MAP, KernelMemory

__all__ = ["MemoryAnalysis", "analyze_memory", "report_parts"]


@dataclass(frozen=True)
class MemoryAnalysis:
    """``matched_by`` how the pack was accepted; ``kaslr_offset`` in bytes; ``cpu`` the crashing
    CPU; ``task`` the task running there; ``frames`` its unwound stack, innermost first;
    ``unwind_complete`` when the walk reached the end of the stack; ``modules`` in list order;
    ``last_unloaded`` module name (``""`` none, None unreadable); ``findings``; ``partial`` when
    anything could not be read, ``notes`` what; ``tasks`` every process on the task list."""

    build_id: str
    matched_by: str
    kaslr_offset: int
    cpu: int | None
    task: TaskRecord | None
    frames: tuple[MemFrame, ...]
    unwind_complete: bool
    modules: tuple[ModuleRecord, ...]
    modules_complete: bool
    last_unloaded: str | None
    findings: tuple[FindingInfo, ...]
    partial: bool
    notes: tuple[str, ...]
    tasks: tuple[TaskRecord, ...] = ()
    tasks_complete: bool = False


def _regs_for(ctx: Context, cpus: list[PrStatus], cpu: int, task: TaskRecord
              ) -> tuple[dict[str, int] | None, dict[str, tuple[int, int]]]:
    stacks: dict[str, tuple[int, int]] = {}
    if task.stack:
        stacks["task"] = (task.stack, task.stack + THREAD_SIZE)
    irq = irq_stack(ctx, cpu)
    if irq is not None:
        stacks["irq"] = irq
    # The note of the crashing CPU is the one whose stack pointer is on this task's stack or
    # this CPU's IRQ stack (note order and recorded pids differ between kdump and QEMU).
    for p in cpus:
        rsp = p.regs.get("rsp", 0)
        if any(lo <= rsp < hi for lo, hi in stacks.values()):
            return p.regs, stacks
    # A CPU that panicked on one of its exception (IST) stacks — a double fault after a stack
    # overflow — has its registers in the CPU entry area: that page is the first stack, and
    # the overflowed task's stack pointer lies in the guard page below the task's stack.
    for p in cpus:
        rsp = p.regs.get("rsp", 0)
        if _CEA_START <= rsp < _CEA_END and task.stack:
            page = rsp & ~(_PAGE - 1)
            return p.regs, {**stacks, "exception": (page, page + _PAGE),
                            "guard": (task.stack - _PAGE, task.stack)}
    return None, stacks


# x86_64 4-level paging: the CPU entry area (per-CPU exception stacks) is one P4D slot
_CEA_START, _CEA_END, _PAGE = 0xFFFFFE0000000000, 0xFFFFFE8000000000, 4096


def analyze_memory(mem: KernelMemory, info: VmcoreInfo, pack: KernelSymbols,
                   cpus: list[PrStatus], *, oops_cpu: int | None = None,
                   klass: str = "unknown", fault_address: int | None = None,
                   bug_location: str | None = None,
                   rip: CodeLocation | None = None) -> MemoryAnalysis:
    """Analyze the dump's memory with ``pack``; ``cpus`` are the NT_PRSTATUS notes;
    ``oops_cpu`` the CPU the log's oops names (else the first CPU whose registers lie on its
    current task's stack). Raises :class:`~vmcore.deep.match.PackMismatch` only."""
    # the dump's own symbols (vmcore.dumpsyms) are the dump's kernel by construction
    matched_by = "dump" if getattr(pack, "from_dump", False) else match_pack(info, pack, mem)
    ctx = Context(mem, pack, kaslr_offset(info))
    notes = ctx.notes
    mods, mods_ok = read_modules(ctx)  # Context reads return None, never raise
    lu = last_unloaded(ctx)
    tasks, tasks_ok = list_tasks(ctx)
    candidates = [oops_cpu] if oops_cpu is not None else list(range(len(cpus) or 1))
    cpu = task = regs = None
    stacks: dict[str, tuple[int, int]] = {}
    for c in candidates:
        addr = current_task(ctx, c)
        if not addr:
            continue
        t = read_task(ctx, addr)
        r, s = _regs_for(ctx, cpus, c, t)
        if cpu is None or r is not None:
            cpu, task, regs, stacks = c, t, r, s
        if r is not None:
            break
    frames: tuple[MemFrame, ...] = ()
    complete = False
    if task is None:
        notes.append("task: no readable current task on the crashing CPU")
    elif regs is None:
        notes.append(f"unwind: no CPU registers on the stack of task {task.address:#x}")
    else:
        uw = unwind(ctx, mods, regs, stacks)
        frames, complete = uw.frames, uw.complete
        notes.extend(uw.notes)

    def line_of(fr: MemFrame) -> str | None:
        if fr.module is not None or not ctx.in_kernel_image(fr.address):
            return None
        li = pack.line_for(fr.address - ctx.offset)
        return f"{li.file}:{li.line}" if li is not None else None

    facts = Facts(frames, tuple(mods), lu, task, klass, fault_address, bug_location, line_of,
                  START_KERNEL_MAP + mem.image_size,
                  lambda fr: bug_table_location(ctx, mods, fr.address), rip=rip)
    findings = find(facts, notes)
    partial = not (complete and mods_ok and tasks_ok and task is not None) or bool(notes)
    return MemoryAnalysis(pack.build_id, matched_by, ctx.offset, cpu, task, frames, complete,
                          tuple(mods), mods_ok, lu, findings, partial, tuple(notes),
                          tuple(tasks), tasks_ok)


def report_parts(ma: MemoryAnalysis) -> tuple[MemoryInfo, tuple[FindingInfo, ...]]:
    """The report records of ``ma``."""
    t = ma.task
    frames = tuple(MemFrameInfo(f.function, f.offset, f.size, f.module, f.address, f.reliable,
                                f.exception, f.stack, f.context) for f in ma.frames)
    mods = tuple(ModuleEntry(m.name, m.address, m.base, m.size, m.taints) for m in ma.modules)
    mi = MemoryInfo(ma.build_id, ma.matched_by, ma.kaslr_offset, ma.cpu,
                    t.address if t else None, t.comm if t else None, t.pid if t else None,
                    t.state if t else None, frames, ma.unwind_complete, mods,
                    ma.modules_complete, ma.last_unloaded, ma.partial, ma.notes,
                    len(ma.tasks), ma.tasks_complete)
    return mi, ma.findings
