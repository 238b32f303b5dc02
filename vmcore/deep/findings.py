"""Findings from memory, each with its evidence: an ordered table of small rules.

Each rule takes the :class:`Facts` of one analysis and returns its findings, as the report's
own :class:`~vmcore.report.FindingInfo` records; a rule that fails records a note and the
others still run. Order matters only for presentation: the most specific finding (use after
unload) first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmcore.deep.modules import ModuleRecord
from vmcore.deep.tasks import TaskRecord
from vmcore.deep.unwind import MemFrame
from vmcore.findings import MODULES_VADDR, in_module_area, in_null_page, trapping_frame
from vmcore.oops_records import CodeLocation
from vmcore.report import FindingInfo

__all__ = ["Facts", "find"]



@dataclass(frozen=True)
class Facts:
    """What the rules look at: unwound ``frames`` (innermost first), loaded ``modules``,
    ``last_unloaded`` module name, crashed ``task``; ``modules_start`` where the module area
    begins (the end of the kernel image mapping); from the log: panic ``klass``, faulting
    data ``fault_address``, ``bug_location`` (file:line); ``line_of`` maps a frame to the
    file:line of its vmlinux address, ``bug_of`` to the file:line its BUG()/WARN() entry in
    memory records; ``in_image`` tells kernel-image addresses."""

    frames: tuple[MemFrame, ...]
    modules: tuple[ModuleRecord, ...]
    last_unloaded: str | None
    task: TaskRecord | None
    klass: str
    fault_address: int | None
    bug_location: str | None
    line_of: Callable[[MemFrame], str | None]
    modules_start: int = MODULES_VADDR
    bug_of: Callable[[MemFrame], str | None] = lambda _f: None
    # arm64: the kernel image lies inside the module area (modules are placed around it)
    in_image: Callable[[int], bool] = lambda _a: False
    rip: CodeLocation | None = None  # where the log's oops says it trapped


def _thread(f: Facts) -> str | None:
    if f.task is None:
        return None
    return f"{f.task.comm} (pid {f.task.pid})"


def _fault_frame(f: Facts) -> MemFrame | None:
    """The frame taken from the trapping exception's registers (crash's exception RIP): the
    exception frame at the log's oops address, else the innermost one. An interrupt taken
    while the kernel panics (panic waits in a delay loop) adds an exception frame inside the
    trapping one's."""
    i = trapping_frame(f.frames, f.rip)
    return f.frames[i] if i is not None else f.frames[0] if f.frames else None


def _use_after_unload(f: Facts) -> list[FindingInfo]:
    if not f.last_unloaded:
        return []
    for fr in f.frames:
        if not (fr.exception or fr.reliable) or not in_module_area(fr.address, f.modules_start) \
                or f.in_image(fr.address):
            continue
        if any(m.contains(fr.address) for m in f.modules):
            continue
        how = "the exception RIP" if fr.exception else "a reliable frame"
        return [FindingInfo(
            "use-after-module-unload", f.last_unloaded, fr.address, _thread(f),
            (f"{how} {fr.address:#x} is in the module area but inside no loaded module "
             f"({len(f.modules)} loaded)",
             f"last_unloaded_module is {f.last_unloaded!r}"))]
    return []


def _null_deref(f: Facts) -> list[FindingInfo]:
    if f.klass != "page_fault" or f.fault_address is None or not in_null_page(f.fault_address):
        return []
    fr = _fault_frame(f)
    return [FindingInfo(
        "null-pointer-dereference", fr.module if fr else None, fr.address if fr else None,
        _thread(f),
        (f"faulting data address {f.fault_address:#x} is in the NULL page",
         f"faulting code {fr}" if fr else "faulting code unknown"))]


def _bug_warn(f: Facts) -> list[FindingInfo]:
    if f.klass not in ("kernel_bug", "bug", "warning"):
        return []
    if f.klass == "bug" and not any(fr.exception for fr in f.frames):
        # a 'BUG: <what>' the kernel reports by printing (scheduling while atomic, sleeping in
        # atomic context) traps nowhere: the innermost frame is the panic's own delay loop
        return []
    fr = _fault_frame(f)
    what = "BUG" if f.klass != "warning" else "WARNING"
    evidence = []
    if f.bug_location:
        evidence.append(f"the log says {what} at {f.bug_location}")
    table = f.bug_of(fr) if fr is not None else None
    if table:
        evidence.append(f"the bug table in memory records {what} at {table}")
    elif fr is not None and (line := f.line_of(fr)):
        evidence.append(f"the trapping instruction is at {line}")
    if fr is not None:
        evidence.append(f"in {fr}")
    return [FindingInfo("warning" if f.klass == "warning" else "bug",
                        fr.module if fr else None, fr.address if fr else None, _thread(f),
                        tuple(evidence))]


RULES: tuple[Callable[[Facts], list[FindingInfo]], ...] = (
    _use_after_unload,  # most specific first
    _null_deref,
    _bug_warn,
)


def find(facts: Facts, notes: list[str]) -> tuple[FindingInfo, ...]:
    """Every rule's findings, in rule order; a failing rule adds a note."""
    out: list[FindingInfo] = []
    for rule in RULES:
        try:
            out.extend(rule(facts))
        except Exception as exc:  # one broken rule must not lose the others' findings
            notes.append(f"findings: {rule.__name__} failed: {type(exc).__name__}")
    return tuple(out)
