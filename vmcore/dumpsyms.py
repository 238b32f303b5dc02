"""A symbol source made from the dump itself: kallsyms, BTF and ORC read from kernel memory.

For kernels whose debug packages nobody kept. Implements :class:`vmcore.symbols.KernelSymbols`
so deep analysis runs on it as on a pack: kallsyms (:mod:`vmcore.kallsyms`) gives names and
addresses, the in-memory BTF (``__start_BTF``..``__stop_BTF``, :mod:`vmcore.btf`) the struct
layouts, the in-memory ORC tables (:mod:`vmcore.orc`) the unwinder's rules; module symbols
come from each module's own in-memory ``kallsyms`` (read by the deep analysis, as with a pack).
There is no line information. Addresses are link-time (the KASLR slide subtracted), as a
pack's are.

Kallsyms is required (VMCOREINFO exports it since v6.0); a missing or malformed BTF or ORC
becomes a note and an empty table, so the analysis still runs and is flagged partial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmcore.btf import StructLayout, member_offset
from vmcore.btf_lazy import BtfTypes, lazy_btf_types
from vmcore.errors import AnalyzerError, BadKallsyms
from vmcore.kallsyms import IndexedKallsyms, Kallsyms, read_kallsyms
from vmcore.orc import MemoryOrc, OrcEntry
from vmcore.pages import PageReader, Reader
from vmcore.symbols import SymbolLookup
from vmcore.vmcoreinfo import VmcoreInfo

__all__ = ["ANALYSIS_STRUCTS", "DumpMeta", "DumpSymbols", "NoOrc", "symbols_from_dump"]

# The types deep analysis reads (the same list the symbol cache puts in packs; absent ones,
# e.g. pcpu_hot before v6.2 or module_memory before v6.4, are simply not there).
ANALYSIS_STRUCTS: tuple[str, ...] = (
    "task_struct", "thread_struct", "thread_info", "list_head", "hlist_head", "hlist_node",
    "module", "module_layout", "module_memory", "mod_kallsyms", "mm_struct", "pt_regs",
    "inactive_task_frame", "fork_frame", "pcpu_hot", "pid", "upid", "signal_struct",
    "nsproxy", "uts_namespace", "new_utsname", "kernel_symbol", "irq_stack", "bug_entry",
)
MAX_BTF_BYTES = 64 << 20
MAX_ORC_BYTES = 96 << 20
_BANNER_MAX = 512


@dataclass(frozen=True)
class DumpMeta:
    """``release`` from VMCOREINFO, ``banner`` ``linux_banner`` read from memory."""

    release: str | None
    banner: str | None


class NoOrc:
    """The unwind tables of a kernel without ORC (or whose ORC is unreadable): none."""

    header: bytes | None = None

    def lookup(self, address: int) -> OrcEntry | None:
        return None


@dataclass(frozen=True)
class DumpSymbols:
    """Symbols, layouts and ORC from the dump's memory; ``notes`` say what is missing."""

    build_id: str
    meta: DumpMeta
    symbols: SymbolLookup
    types: Mapping[str, StructLayout]
    orc: MemoryOrc | NoOrc
    notes: tuple[str, ...] = ()
    from_dump: bool = True  # Report.symbols names this source

    def line_for(self, address: int) -> None:
        return None  # kallsyms has no line information

    def member_offset(self, struct_name: str, path: str) -> int | None:
        return member_offset(self.types, struct_name, path)

    def late_notes(self) -> tuple[str, ...]:
        """What reading BTF lazily met after this source was made (malformed types,
        unreadable memory): known only once the analysis has looked its types up."""
        return self.types.notes if isinstance(self.types, BtfTypes) else ()


def _span(ks: SymbolLookup, start: str, stop: str, limit: int) -> tuple[int, int] | None:
    a, b = ks.address_of(start), ks.address_of(stop)
    if a is None or b is None:
        return None
    if not 0 <= b - a <= limit:
        raise AnalyzerError(f"{start}..{stop} spans {b - a} bytes (limit {limit})")
    return a, b - a


def _btf(read: Reader, ks: SymbolLookup, slide: int, notes: list[str]
         ) -> Mapping[str, StructLayout]:
    """The layouts of :data:`ANALYSIS_STRUCTS`, read from the in-memory BTF as lookups need
    them (:func:`vmcore.btf.lazy_btf_types`): tens of KiB of its megabytes."""
    try:
        span = _span(ks, "__start_BTF", "__stop_BTF", MAX_BTF_BYTES)
        if span is None:
            notes.append("btf: no __start_BTF in kallsyms (kernel built without BTF)")
            return {}
        start = span[0] + slide
        return lazy_btf_types(lambda off, n: read(start + off, n), span[1], ANALYSIS_STRUCTS)
    except AnalyzerError as exc:
        notes.append(f"btf: {exc}")
        return {}


def _orc(mem: PageReader, ks: SymbolLookup, slide: int, notes: list[str]
         ) -> MemoryOrc | NoOrc:
    try:
        ips = _span(ks, "__start_orc_unwind_ip", "__stop_orc_unwind_ip", MAX_ORC_BYTES)
        ent = _span(ks, "__start_orc_unwind", "__stop_orc_unwind", MAX_ORC_BYTES)
        if ips is None or ent is None:
            notes.append("orc: no ORC tables in kallsyms (kernel built without ORC)")
            return NoOrc()
        hdr = _span(ks, "__start_orc_header", "__stop_orc_header", 64)  # v6.5+
        header = mem.read(hdr[0] + slide, hdr[1]) if hdr is not None else None
        return MemoryOrc.in_memory(mem, ips[0], ips[1], ent[0], ent[1], header, slide)
    except AnalyzerError as exc:
        notes.append(f"orc: {exc}")
        return NoOrc()


def _banner(read: Reader, ks: SymbolLookup, slide: int) -> str | None:
    addr = ks.address_of("linux_banner")
    if addr is None:
        return None
    try:
        raw = read(addr + slide, _BANNER_MAX)
    except AnalyzerError:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip() or None


def symbols_from_dump(read: Reader, info: VmcoreInfo,
                      ks: Kallsyms | IndexedKallsyms | None = None) -> DumpSymbols:
    """The dump's own symbols; ``read(vaddr, length)`` reads kernel memory; ``ks`` the
    kallsyms already read from it (at this slide), if any. Raises
    :class:`~vmcore.errors.BadKallsyms` when kallsyms cannot be decoded (before v6.0
    VMCOREINFO does not export it)."""
    slide = info.kernel_offset or 0
    if ks is None:
        ks = read_kallsyms(read, dict(info.symbols), slide)
    if ks.address_of("init_task") is None:
        raise BadKallsyms("kallsyms: no init_task symbol")
    notes: list[str] = []
    types = _btf(read, ks, slide, notes)
    orc = _orc(PageReader(read), ks, slide, notes)
    meta = DumpMeta(info.osrelease, _banner(read, ks, slide))
    return DumpSymbols(info.build_id or "", meta, ks, types, orc, tuple(notes))
