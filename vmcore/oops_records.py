"""Typed records of the oops parser (see :mod:`vmcore.oops`) and the two small parsers
they need: code locations and x86 page-fault error codes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vmcore.taint import Taint

__all__ = [
    "CodeLocation",
    "Frame",
    "LogAnalysis",
    "ModuleRef",
    "Oops",
    "PageFaultInfo",
    "decode_pf_error",
    "parse_location",
]

# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeLocation:
    """``sym+0xoff/0xsize [module]`` or a bare address. ``offset``/``size`` in bytes."""

    text: str
    function: str | None = None
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    address: int | None = None


@dataclass(frozen=True)
class Frame:
    """One ``Call Trace:`` line. ``reliable`` is False for ``?`` frames; ``context`` is the
    innermost open ``<IRQ>``/``<NMI>``/``<SOFTIRQ>``/``<TASK>`` section (lower case), or None."""

    location: CodeLocation
    reliable: bool
    context: str | None

    @property
    def function(self) -> str | None:
        """Symbol name, None for a bare address."""
        return self.location.function

    @property
    def module(self) -> str | None:
        """Module name when the symbol is in a module."""
        return self.location.module


@dataclass(frozen=True)
class ModuleRef:
    """A module from ``Modules linked in:``; ``taints`` as printed in parentheses
    (``OE``, ``+`` loading, ``-`` unloading)."""

    name: str
    taints: str = ""


@dataclass(frozen=True)
class PageFaultInfo:
    """The ``#PF:`` lines. ``error_code`` bits decoded into ``error_flags`` (PROT, WRITE, USER,
    RSVD, INSTR, PK, SHSTK, SGX); ``access`` is ``read``, ``write`` or ``instruction fetch``;
    ``privilege`` ``supervisor``/``user``; ``mode`` ``kernel``/``user``; ``reason`` the text
    after the error code (``not-present page``)."""

    error_code: int | None = None
    error_flags: tuple[str, ...] = ()
    access: str | None = None
    privilege: str | None = None
    mode: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Oops:
    """One oops/BUG/WARNING/lockup report.

    ``klass`` is the class (set while parsing), ``qualifiers`` refine it
    (``null_dereference``, ``instruction_fetch``, ``non_canonical``). ``fault_address`` is the
    faulting data address (page faults; the non-canonical address of a GPF). ``die_*`` come from
    the ``reason: code [#n] FLAGS`` line. ``lines`` is the half-open line range in the text.
    """

    headline: str
    klass: str = "unknown"
    qualifiers: tuple[str, ...] = ()
    lines: tuple[int, int] = (0, 0)
    fault_address: int | None = None
    page_fault: PageFaultInfo | None = None
    die_line: str | None = None
    die_reason: str | None = None
    die_error_code: int | None = None
    die_counter: int | None = None
    die_flags: tuple[str, ...] = ()
    bug_file: str | None = None
    bug_line: int | None = None
    warning_function: CodeLocation | None = None
    lockup_seconds: int | None = None
    cpu: int | None = None
    pid: int | None = None
    uid: int | None = None
    comm: str | None = None
    kdump_loaded: bool = False
    taint: Taint | None = None
    kernel_release: str | None = None
    kernel_version: str | None = None
    hardware: str | None = None
    rip: CodeLocation | None = None
    rip_cs: int | None = None
    code: bytes | None = None
    code_fault_index: int | None = None
    code_unavailable: str | None = None
    registers: Mapping[str, int] = field(default_factory=dict)
    frames: tuple[Frame, ...] = ()
    modules: tuple[ModuleRef, ...] | None = None
    last_unloaded: ModuleRef | None = None
    end_marker: str | None = None


@dataclass(frozen=True)
class LogAnalysis:
    """Everything the oops parser found in a log. ``panic_message`` is the text after
    ``Kernel panic - not syncing: `` (first one); ``kernel_offset`` the KASLR offset in bytes
    (None when not printed, 0 when ``disabled``); ``klass`` the crash class of the whole log
    (the primary oops's, else derived from the panic message)."""

    oopses: tuple[Oops, ...]
    panic_message: str | None
    kernel_offset: int | None
    kernel_release: str | None
    klass: str
    qualifiers: tuple[str, ...]

    @property
    def primary(self) -> Oops | None:
        """The first oops, or None."""
        return self.oopses[0] if self.oopses else None


# -- small parsers ---------------------------------------------------------------------------

_HEX = r"[0-9a-fA-F]"
_LOC = re.compile(
    rf"^(?P<sym>[^\s+\[\]]+)\+0x(?P<off>{_HEX}+)/0x(?P<size>{_HEX}+)"
    r"(?:\s+\[(?P<mod>[^\]\s]+?)(?:\s+\S+)?\])?$"
)
_BARE = re.compile(rf"^(?:0x)?(?P<addr>{_HEX}{{6,16}})$")


def parse_location(text: str) -> CodeLocation:
    """``sym+0x1/0x2 [mod]``, ``0xffffffffc08a65d3`` or anything else (kept as text)."""
    t = text.strip()
    m = _LOC.match(t)
    if m:
        return CodeLocation(t, m["sym"], int(m["off"], 16), int(m["size"], 16), m["mod"])
    m = _BARE.match(t)
    if m:
        return CodeLocation(t, address=int(m["addr"], 16))
    return CodeLocation(t)


_PF_BITS = ((0, "PROT"), (1, "WRITE"), (2, "USER"), (3, "RSVD"), (4, "INSTR"), (5, "PK"),
            (6, "SHSTK"), (15, "SGX"))


def decode_pf_error(code: int) -> tuple[str, ...]:
    """Names of the set x86 page-fault error-code bits (``arch/x86/include/asm/trap_pf.h``)."""
    return tuple(name for bit, name in _PF_BITS if code >> bit & 1)


