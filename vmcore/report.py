"""The analysis report: versioned, typed records and their JSON form.

Schema ``crashfleet.analyzer/report`` version :data:`SCHEMA_VERSION`; documented field by field
in ``docs/report-schema.md``. Adding an optional field keeps the version; renaming, removing or
changing the meaning of a field bumps it. Version 2 writes addresses as lower-case hex strings
(``"0xffffffffc04b9019"``): JSON readers that hold numbers as doubles lose the low bits of a
64-bit address. :func:`address_of` reads an address of either version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass

__all__ = [
    "READABLE_VERSIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SYMBOLS_DUMP",
    "SYMBOLS_NONE",
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
    "address_of",
]

SCHEMA = "crashfleet.analyzer/report"
# Report.symbols: which symbols the deep analysis used ("pack <build-id>" for a pack).
SYMBOLS_DUMP = "from the dump (kallsyms, BTF, ORC)"
SYMBOLS_NONE = "none (log only)"
SCHEMA_VERSION = 2
# The report versions a reader of this module accepts (1: addresses as JSON numbers).
READABLE_VERSIONS = frozenset({1, 2})


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
    (``comm (pid N)``) and ``evidence`` sentences; ``source`` ``memory`` (read with symbols)
    or ``log`` (the kernel log alone supports it)."""

    kind: str
    module: str | None
    address: int | None
    thread: str | None
    evidence: tuple[str, ...]
    source: str = "memory"


@dataclass(frozen=True)
class MemoryInfo:
    """What was read from memory with the kernel's symbol pack: ``build_id`` of the pack,
    ``matched_by`` (``build-id``, ``release+banner``, ``dump`` for the dump's own
    symbols), ``kaslr_offset`` in bytes, crashing
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
    say which and why (never secrets: offsets and field names only). ``symbolized`` when
    symbols were used (a pack, or the dump's own kallsyms/BTF/ORC; ``symbols`` says which):
    ``memory`` then holds what was read from memory. ``findings`` holds what memory shows
    (``source`` ``memory``) and what the log alone supports (``source`` ``log``).
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
    symbols: str = SYMBOLS_NONE

    def to_dict(self) -> dict[str, object]:
        """The JSON-ready form (``klass`` fields are spelled ``class``; addresses are hex
        strings, and no integer exceeds 2^53)."""
        body = _json_value(self, frozenset())
        assert isinstance(body, dict)
        return {"schema": SCHEMA, "version": SCHEMA_VERSION, **body}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


# The address fields of each record, written as hex strings from version 2 on.
_ADDRESS_FIELDS: dict[str, frozenset[str]] = {
    "KernelInfo": frozenset({"kernel_offset", "phys_base"}),
    "RipInfo": frozenset({"address"}),
    "FaultInfo": frozenset({"address"}),
    "FrameInfo": frozenset({"address"}),
    "CpuState": frozenset({"rip", "rsp"}),
    "MemFrameInfo": frozenset({"address", "stack"}),
    "ModuleEntry": frozenset({"address", "base"}),
    "FindingInfo": frozenset({"address"}),
    "MemoryInfo": frozenset({"kaslr_offset", "task_address"}),
}
# Doubles hold integers exactly up to 2^53: a larger integer (a hostile header field) is
# written as a hex string too, so that no JSON reader silently rounds it.
_MAX_JSON_INT = 2**53


def _hex(value: int) -> str:
    return f"{value & (2**64 - 1):#x}" if value < 0 else f"{value:#x}"


def _json_value(value: object, hex_fields: frozenset[str], name: str = "") -> object:
    if is_dataclass(value) and not isinstance(value, type):
        own = _ADDRESS_FIELDS.get(type(value).__name__, frozenset())
        return {("class" if f.name == "klass" else f.name):
                _json_value(getattr(value, f.name), own, f.name) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _json_value(v, frozenset()) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, frozenset()) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and (
            name in hex_fields or abs(value) > _MAX_JSON_INT):
        return _hex(value)
    return value


def address_of(value: object) -> int | None:
    """An address as a report of either version writes it: a JSON number (version 1) or a
    hex string ``"0x…"`` (version 2); None for null or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None
