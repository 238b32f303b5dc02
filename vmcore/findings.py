"""The findings the kernel log alone supports, and the address facts every finding rule uses.

One home for the x86_64 module-area bounds and the NULL-page bound: the memory rules
(:mod:`vmcore.deep.findings`), the report and the signature inputs all import them from here,
and :func:`log_findings` is the one function that computes the log-based findings for both
the report and the signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from vmcore.report import FindingInfo, Report

__all__ = [
    "ARM64_MODULES_END",
    "ARM64_MODULES_VADDR",
    "MODULES_END",
    "MODULES_VADDR",
    "NULL_PAGE_SIZE",
    "Location",
    "UnwoundFrame",
    "in_module_area",
    "in_null_page",
    "log_findings",
    "merge_findings",
    "trapping_frame",
]

# x86_64 module mapping space (Documentation/arch/x86/x86_64/mm.rst): it starts where the
# kernel image mapping ends (0xffffffffa0000000 with a 512 MiB image, 0xffffffffc0000000 with
# KASLR's 1 GiB) and ends below the fixmap.
MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000
# arm64 (48- and 52-bit VA kernels since 5.4): modules are placed near the randomized kernel
# image, anywhere in [MODULES_VADDR, VMALLOC_END) = [_PAGE_END(48), the vmemmap); the image
# itself is symbolized, so a bare address there is module or vmalloc text.
ARM64_MODULES_VADDR = 0xFFFF800000000000
ARM64_MODULES_END = 0xFFFFFC0000000000
# The first page is never mapped: a fault below it is a NULL pointer (plus a member offset).
NULL_PAGE_SIZE = 4096


def in_module_area(address: int, start: int = MODULES_VADDR) -> bool:
    """True when ``address`` lies in the module mapping area (``start``: where the kernel
    image mapping ends, when memory tells)."""
    return start <= address < MODULES_END


class Location(Protocol):
    """Where the log's oops says it trapped (``RIP:``/``pc :``): a bare ``address``, or
    ``function``+``offset``."""

    @property
    def address(self) -> int | None: ...
    @property
    def function(self) -> str | None: ...
    @property
    def offset(self) -> int | None: ...


class UnwoundFrame(Protocol):
    """A frame unwound from memory (the analysis's and the report's records alike)."""

    @property
    def address(self) -> int: ...
    @property
    def function(self) -> str | None: ...
    @property
    def offset(self) -> int | None: ...
    @property
    def exception(self) -> bool: ...


def trapping_frame(frames: Sequence[UnwoundFrame], rip: Location | None) -> int | None:
    """Index in ``frames`` (innermost first) of the exception frame the oops trapped in: the
    one at the log's ``rip``, else the innermost exception frame; None when there is none.
    An interrupt taken while the kernel panics (panic waits in a delay loop) adds an
    exception frame inside the trapping one."""
    trapped = [i for i, f in enumerate(frames) if f.exception]
    if rip is not None:
        for i in trapped:
            if _at(frames[i], rip):
                return i
    return trapped[0] if trapped else None


def _at(f: UnwoundFrame, loc: Location) -> bool:
    if loc.address is not None:
        return f.address == loc.address
    return loc.function is not None and f.function == loc.function and \
        loc.offset in (None, f.offset)


def in_null_page(address: int) -> bool:
    """True when a faulting data ``address`` is in the NULL page."""
    return 0 <= address < NULL_PAGE_SIZE


def _in_arch_module_area(address: int, arch: str | None) -> bool:
    if arch == "arm64":
        return ARM64_MODULES_VADDR <= address < ARM64_MODULES_END
    return in_module_area(address)


def _thread(report: Report) -> str | None:
    t = report.task
    if t.comm is None or t.pid is None:
        return None
    return f"{t.comm} (pid {t.pid})"


def _use_after_unload(report: Report) -> FindingInfo | None:
    rip, mods = report.rip, report.modules
    if (rip is None or rip.function is not None or rip.address is None
            or not _in_arch_module_area(rip.address, report.kernel.arch)
            or mods is None or not mods.last_unloaded):
        return None
    return FindingInfo(
        "use-after-module-unload", mods.last_unloaded, rip.address, _thread(report),
        (f"the oops RIP {rip.address:#x} is a bare address in the module area: no loaded "
         "module's symbols cover it",
         f"the log names {mods.last_unloaded!r} as the last unloaded module"), source="log")


def _null_deref(report: Report) -> FindingInfo | None:
    fault = report.fault
    if (report.panic.klass != "page_fault" or fault is None or fault.address is None
            or not in_null_page(fault.address)):
        return None
    rip = report.rip
    evidence = [f"the log's faulting data address {fault.address:#x} is in the NULL page"]
    if rip is not None:
        evidence.append(f"faulting code {rip.text}")
    return FindingInfo("null-pointer-dereference", rip.module if rip else None,
                       rip.address if rip else None, _thread(report), tuple(evidence),
                       source="log")


def log_findings(report: Report) -> tuple[FindingInfo, ...]:
    """The findings the report's log-based parts support (``source`` ``log``), most specific
    first: use after module unload (a bare RIP in the module area while a module was
    unloaded), NULL dereference (a page fault in the NULL page)."""
    out = (_use_after_unload(report), _null_deref(report))
    return tuple(f for f in out if f is not None)


def merge_findings(memory: tuple[FindingInfo, ...], log: tuple[FindingInfo, ...]
                   ) -> tuple[FindingInfo, ...]:
    """The memory findings, then each log finding of a kind memory did not find (memory is
    the stronger evidence; a finding is never listed twice)."""
    kinds = {f.kind for f in memory}
    return (*memory, *(f for f in log if f.kind not in kinds))
