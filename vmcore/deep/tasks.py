"""Tasks from memory: ``current`` of each CPU, and a task's pid, comm, state and stack."""

from __future__ import annotations

from dataclasses import dataclass

from vmcore.deep.context import Context

__all__ = ["MAX_TASKS", "THREAD_SIZE", "TaskRecord", "current_task", "irq_stack", "list_tasks",
           "nr_cpu_ids", "read_task"]

# x86_64 THREAD_SIZE (16 KiB without KASAN) and IRQ_STACK_SIZE (16 KiB).
THREAD_SIZE = 16384
IRQ_STACK_SIZE = 16384
_MAX_CPUS = 1024
_COMM_LEN = 16

# Task state bits (include/linux/sched.h) -> the two letters crash's ps prints.
_STATE_LETTERS = ((0x0402, "ID"), (0x0001, "IN"), (0x0002, "UN"), (0x0004, "ST"),
                  (0x0008, "TR"), (0x0080, "DE"), (0x0100, "WA"), (0x0200, "WA"))


@dataclass(frozen=True)
class TaskRecord:
    """A ``task_struct``: ``address``, ``pid``, ``comm``, ``state`` as crash's two letters
    (``RU``, ``IN``, …; None unreadable), ``stack`` base address of its kernel stack
    (``THREAD_SIZE`` bytes)."""

    address: int
    pid: int | None
    comm: str | None
    state: str | None
    stack: int | None


def nr_cpu_ids(ctx: Context) -> int:
    """Possible CPU ids (``nr_cpu_ids``), capped at 1024; 1 when unreadable."""
    addr = ctx.symbol("nr_cpu_ids")
    n = ctx.u32(addr) if addr is not None else None
    return max(1, min(n or 1, _MAX_CPUS))


def _pcpu_hot_member(ctx: Context, member: str, cpu: int) -> int | None:
    # v6.2 (commit 64701838bf057) gathered hot per-cpu variables into struct pcpu_hot; older
    # kernels have them as separate per-cpu variables of the same name.
    if ctx.link_address("pcpu_hot") is not None and "pcpu_hot" in ctx.pack.types:
        o = ctx.off("pcpu_hot", member)
        base = ctx.per_cpu("pcpu_hot", cpu)
        if o is not None and base is not None:
            return ctx.u64(base + o)
    addr = ctx.per_cpu(member, cpu)
    return ctx.u64(addr) if addr is not None else None


def current_task(ctx: Context, cpu: int) -> int | None:
    """The ``task_struct`` address running on ``cpu`` (its ``current``)."""
    return _pcpu_hot_member(ctx, "current_task", cpu)


def irq_stack(ctx: Context, cpu: int) -> tuple[int, int] | None:
    """``[start, end)`` of ``cpu``'s hard-IRQ stack. ``hardirq_stack_ptr`` points at the top
    word of the stack (v5.8+, where the previous stack pointer is saved on a switch)."""
    ptr = _pcpu_hot_member(ctx, "hardirq_stack_ptr", cpu)
    if not ptr:
        return None
    end = (ptr + 8 + 0xFFF) & ~0xFFF
    return end - IRQ_STACK_SIZE, end


def _state(ctx: Context, task: int) -> str | None:
    # v5.14 (commit 2f064a59a11f) renamed task_struct.state to __state (and made it an int).
    for name in ("__state", "state"):
        o = ctx.off("task_struct", name)
        if o is not None:
            size = ctx.member_size("task_struct", name) or 8
            raw = ctx.read(task + o, min(size, 8))
            break
    else:
        return None
    if raw is None:
        return None
    state = int.from_bytes(raw, "little")
    eo = ctx.off("task_struct", "exit_state")
    exit_state = ctx.u32(task + eo) if eo is not None else 0
    if exit_state:
        return "ZO" if exit_state & 0x20 else "DE"
    if state == 0:
        return "RU"
    for mask, letters in _STATE_LETTERS:
        if state & mask == mask:
            return letters
    return "??"


def read_task(ctx: Context, task: int) -> TaskRecord:
    """What can be read of the task at ``task``; unreadable fields are None."""
    po = ctx.off("task_struct", "pid")
    co = ctx.off("task_struct", "comm")
    pid = ctx.s32(task + po) if po is not None else None
    comm = ctx.cstr(task + co, _COMM_LEN) if co is not None else None
    stack = ctx.member_u64(task, "task_struct", "stack")
    return TaskRecord(task, pid, comm, _state(ctx, task), stack)


MAX_TASKS = 100_000


def list_tasks(ctx: Context) -> tuple[list[TaskRecord], bool]:
    """Every process on ``init_task.tasks`` (init_task first), and whether the list was read
    completely (False: unreadable, cyclic, or longer than :data:`MAX_TASKS`). Threads other
    than group leaders and the other CPUs' idle tasks are not on this list."""
    init = ctx.symbol("init_task")
    lo = ctx.off("task_struct", "tasks")
    if init is None or lo is None:
        ctx.notes.append("tasks: no init_task or task_struct.tasks in the pack")
        return [], False
    out = [read_task(ctx, init)]
    for node in ctx.list_nodes(init + lo, MAX_TASKS - 1):  # init_task is one of MAX_TASKS
        if node is None:
            ctx.notes.append("tasks: list broken (unreadable, cyclic or too long)")
            return out, False
        out.append(read_task(ctx, node - lo))
    return out, True
