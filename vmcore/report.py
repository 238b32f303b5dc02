"""The analysis report: versioned, typed records and their JSON form.

Schema ``crashfleet.analyzer/report`` version :data:`SCHEMA_VERSION`; documented field by field
in ``docs/report-schema.md``. Adding an optional field keeps the version; renaming, removing or
changing the meaning of a field bumps it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "CpuState",
    "DumpInfo",
    "FaultInfo",
    "FindingInfo",
    "FrameInfo",
    "KernelInfo",
    "LogInfo",
    "MemFrameInfo",
    "MemoryInfo",
    "ModuleEntry",
    "ModulesInfo",
    "OopsSummary",
    "PanicInfo",
    "Report",
    "RipInfo",
    "TaintInfo",
    "TaskInfo",
]

SCHEMA = "crashfleet.analyzer/report"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DumpInfo:
    """The container. ``size`` and ``bytes_fetched`` in bytes; ``page_size`` in bytes;
    ``header_version`` of kdump headers; ``dump_level`` makedumpfile's ``-d``; ``incomplete``
    when makedumpfile ran out of space."""

    format: str
    compression: str
    size: int
    page_size: int
    source: str
    bytes_fetched: int | None = None
    header_version: int | None = None
    dump_level: int | None = None
    incomplete: bool = False
    nr_cpus: int | None = None


@dataclass(frozen=True)
class KernelInfo:
    """``release`` (``uname -r``), ``version`` (``#1 SMP …``), GNU ``build_id`` (40 hex),
    ``machine``, KASLR ``kernel_offset`` and ``phys_base`` in bytes."""

    release: str | None
    version: str | None
    build_id: str | None
    machine: str | None
    kernel_offset: int | None
    phys_base: int | None


@dataclass(frozen=True)
class PanicInfo:
    """``message`` after ``Kernel panic - not syncing:``; ``class`` of the crash (see the
    schema doc); ``qualifiers`` refining it; ``headline`` the primary oops's first line;
    ``line`` the one line that names the crash, as crash's ``sys`` PANIC field does: the panic
    line, else (kdump taken before ``panic()`` printed) the primary oops's die line."""

    message: str | None
    klass: str
    qualifiers: tuple[str, ...]
    headline: str | None
    line: str | None = None


@dataclass(frozen=True)
class TaskInfo:
    """The task running when the primary oops fired: ``comm``, ``pid``, ``cpu``, ``uid``."""

    comm: str | None
    pid: int | None
    cpu: int | None
    uid: int | None = None


@dataclass(frozen=True)
class TaintInfo:
    """``string`` as printed; ``flags`` the set flags' letters; ``letters`` the printed
    letters without spaces (``GOE``); ``names``/``meanings`` per flag; ``mask`` the bits."""

    string: str
    flags: tuple[str, ...]
    letters: str
    names: tuple[str, ...]
    meanings: tuple[str, ...]
    mask: int


@dataclass(frozen=True)
class ModulesInfo:
    """``loaded`` module names as listed (most recent first); ``taints`` name -> taint letters
    (only modules with any); ``last_unloaded`` and its taints."""

    loaded: tuple[str, ...]
    taints: dict[str, str]
    last_unloaded: str | None
    last_unloaded_taints: str | None


@dataclass(frozen=True)
class RipInfo:
    """The faulting instruction pointer: ``function``+``offset``/``size`` in ``module``, or a
    bare ``address``; ``text`` as printed."""

    text: str
    function: str | None
    offset: int | None
    size: int | None
    module: str | None
    address: int | None


@dataclass(frozen=True)
class FaultInfo:
    """Page-fault or GPF details: faulting ``address``, x86 ``error_code`` and its decoded
    ``error_flags``, ``access`` kind, ``privilege``, ``mode``, ``reason``."""

    address: int | None
    error_code: int | None
    error_flags: tuple[str, ...]
    access: str | None
    privilege: str | None
    mode: str | None
    reason: str | None


@dataclass(frozen=True)
class FrameInfo:
    """One call-trace frame of the primary oops; ``reliable`` False for ``?`` frames;
    ``context`` ``task``/``irq``/``softirq``/``nmi`` or None."""

    function: str | None
    offset: int | None
    size: int | None
    module: str | None
    address: int | None
    reliable: bool
    context: str | None


@dataclass(frozen=True)
class OopsSummary:
    """Each oops in the log, in order; the first is the primary one."""

    headline: str
    klass: str
    qualifiers: tuple[str, ...]
    cpu: int | None
    pid: int | None
    comm: str | None
    rip: str | None
    die: str | None
    bug_location: str | None
    frames: int


@dataclass(frozen=True)
class CpuState:
    """One NT_PRSTATUS note: note ``index``, ``pid`` recorded (QEMU writes vCPU+1), ``rip``,
    ``rsp``."""

    index: int
    pid: int
    rip: int
    rsp: int


@dataclass(frozen=True)
class LogInfo:
    """The kernel log read from the printk ring: ``records`` count, ``partial`` when some
    could not be read."""

    records: int
    partial: bool


@dataclass(frozen=True)
class MemFrameInfo:
    """One frame unwound from memory (innermost first): ``function``+``offset``/``size`` in
    ``module`` (None: vmlinux) at ``address``; ``reliable`` False when ORC did not prove it;
    ``exception`` True when the address came from a ``pt_regs`` (crash's exception RIP);
    ``stack`` the address the return address was read from; ``context`` ``task`` or
    ``irq``."""

    function: str | None
    offset: int | None
    size: int | None
    module: str | None
    address: int
    reliable: bool
    exception: bool
    stack: int | None
    context: str


@dataclass(frozen=True)
class ModuleEntry:
    """A loaded module read from memory: ``name``, ``address`` of its ``struct module``,
    ``base`` of its core text, ``size`` in bytes of its core memory, ``taints`` letters."""

    name: str
    address: int
    base: int
    size: int
    taints: str


@dataclass(frozen=True)
class FindingInfo:
    """A finding: ``kind`` (``use-after-module-unload``, ``null-pointer-dereference``,
    ``bug``, ``warning``), the ``module`` it names, the code ``address``, the ``thread``
    (``comm (pid N)``) and ``evidence`` sentences."""

    kind: str
    module: str | None
    address: int | None
    thread: str | None
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class MemoryInfo:
    """What was read from memory with the kernel's symbol pack: ``build_id`` of the pack,
    ``matched_by`` (``build-id``, ``release+banner``), ``kaslr_offset`` in bytes, crashing
    ``cpu``, its current task (``task_address``, ``comm``, ``pid``, ``state`` as crash's
    letters), the unwound ``frames``, ``modules`` in list order, ``last_unloaded`` module
    (``""`` none); ``partial`` when a walk was cut short, ``notes`` why; ``tasks`` the number
    of processes on the task list (``tasks_complete`` when it was read to its end)."""

    build_id: str
    matched_by: str
    kaslr_offset: int
    cpu: int | None
    task_address: int | None
    comm: str | None
    pid: int | None
    state: str | None
    frames: tuple[MemFrameInfo, ...]
    unwind_complete: bool
    modules: tuple[ModuleEntry, ...]
    modules_complete: bool
    last_unloaded: str | None
    partial: bool
    notes: tuple[str, ...] = ()
    tasks: int | None = None
    tasks_complete: bool = False


@dataclass(frozen=True)
class Report:
    """The whole analysis. ``partial`` is True when any part could not be decoded; ``notes``
    say which and why (never secrets: offsets and field names only). ``symbolized`` when the
    kernel's symbol pack was used: ``memory`` then holds what was read from memory and
    ``findings`` what it shows (without a pack both stay empty and the report is log-based).
    ``title`` the crash's one-line title, set by the signature step (None before it)."""

    dump: DumpInfo
    kernel: KernelInfo
    crash_time: int | None
    panic: PanicInfo
    task: TaskInfo
    taint: TaintInfo | None
    modules: ModulesInfo | None
    rip: RipInfo | None
    fault: FaultInfo | None
    bug_location: str | None
    frames: tuple[FrameInfo, ...]
    oopses: tuple[OopsSummary, ...]
    cpus: tuple[CpuState, ...]
    log: LogInfo | None
    partial: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    symbolized: bool = False
    memory: MemoryInfo | None = None
    findings: tuple[FindingInfo, ...] = ()
    title: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON-ready form (``klass`` fields are spelled ``class``)."""
        body = _rename(asdict(self))
        assert isinstance(body, dict)
        return {"schema": SCHEMA, "version": SCHEMA_VERSION, **body}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def _rename(value: object) -> object:
    if isinstance(value, dict):
        return {("class" if k == "klass" else k): _rename(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rename(v) for v in value]
    return value
