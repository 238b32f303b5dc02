"""Analysis entry points: the header-only peek and the full log + oops report.

Stages run in order; a failing stage after the container is open records a note and the
report is flagged partial rather than lost (a truncated dump still yields its header, a
corrupt ring still yields the header and VMCOREINFO facts).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmcore.arch import dump_arch
from vmcore.errors import AnalyzerError
from vmcore.findings import log_findings, merge_findings
from vmcore.formats import Dump, detect, open_dump
from vmcore.formats.diskdump import KdumpHeader, parse_header
from vmcore.formats.elf import ElfVmcore
from vmcore.formats.flattened import FlatIndex, FlattenedSource, build_index, scan_prefix
from vmcore.logread import read_log
from vmcore.notes import parse_notes, parse_prstatus
from vmcore.oops import LogAnalysis, Oops, parse_log
from vmcore.printk import PrintkLog
from vmcore.report import (
    SYMBOLS_DUMP,
    CpuState,
    DumpInfo,
    FaultInfo,
    FrameInfo,
    KernelInfo,
    LogInfo,
    ModulesInfo,
    OopsSummary,
    PanicInfo,
    Report,
    RipInfo,
    TaintInfo,
    TaskInfo,
)
from vmcore.source import ByteSource
from vmcore.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo

if TYPE_CHECKING:
    from vmcore.arch import VirtualMemory
    from vmcore.symbols import KernelSymbols

__all__ = ["Analysis", "DumpHeader", "PackProvider", "analyze", "read_header", "read_log"]

# Gets the symbol pack of a dump's kernel from its VMCOREINFO (None: no pack; may raise).
PackProvider = Callable[[VmcoreInfo], "KernelSymbols | None"]


@dataclass(frozen=True)
class DumpHeader:
    """What the first blocks of a dump say. ``size`` in bytes, ``crash_time`` in seconds since
    the epoch (None when the dump does not record it), ``page_size`` in bytes."""

    format: str
    compression: str
    size: int
    kernel_release: str | None
    kernel_version: str | None
    machine: str | None
    build_id: str | None
    crash_time: int | None
    page_size: int | None
    nr_cpus: int | None
    dump_level: int | None
    incomplete: bool


# 9999-12-31T23:59:59Z: a header field past it (a bit flip, a hostile file) is no time at all,
# and would fail every consumer that turns it into a date.
_MAX_TIME = 253_402_300_799


def _is_time(t: int | None) -> bool:
    return t is not None and 0 < t <= _MAX_TIME


def _header_from(fmt: str, src: ByteSource, kd: KdumpHeader | None, vmci: VmcoreInfo | None,
                 size: int) -> DumpHeader:
    uts = kd.utsname if kd else {}
    crash_time = kd.timestamp if kd and _is_time(kd.timestamp) else None
    if crash_time is None and vmci is not None and _is_time(vmci.crash_time):
        crash_time = vmci.crash_time
    return DumpHeader(
        format=fmt,
        compression=kd.compression if kd else "none",
        size=size,
        kernel_release=(vmci.osrelease if vmci else None) or uts.get("release") or None,
        kernel_version=uts.get("version") or None,
        machine=uts.get("machine") or None,
        build_id=vmci.build_id if vmci else None,
        crash_time=crash_time,
        page_size=(kd.block_size if kd else None) or (vmci.page_size if vmci else None),
        nr_cpus=kd.nr_cpus if kd else None,
        dump_level=kd.dump_level if kd else None,
        incomplete=kd.incomplete if kd else False,
    )


def read_header(src: ByteSource) -> DumpHeader:
    """Read only the header blocks (and VMCOREINFO) of a dump: a few KiB, even for flattened
    dumps (only the first records are scanned)."""
    fmt = detect(src)
    if fmt == "elf":
        elf = ElfVmcore(src)
        vmci = None
        for blob, off in elf.notes_blobs():
            for n in parse_notes(blob, off):
                if n.name == "VMCOREINFO":
                    vmci = parse_vmcoreinfo(n.desc)
        return _header_from(fmt, src, None, vmci, src.size)
    inner: ByteSource = src
    if fmt == "kdump-flattened":
        inner = FlattenedSource(src, scan_prefix(src))
    kd = parse_header(inner) if fmt == "kdump" else _flat_header(src, inner)
    vmci = None
    if kd.vmcoreinfo is not None:
        start, length = kd.vmcoreinfo
        vmci = parse_vmcoreinfo(inner.read(start, length))
    return _header_from(fmt, src, kd, vmci, src.size)


def _flat_header(src: ByteSource, inner: ByteSource) -> KdumpHeader:
    try:
        return parse_header(inner)
    except AnalyzerError:
        # the first records did not hold the header blocks: index the whole file
        return parse_header(FlattenedSource(src, build_index(src)))


@dataclass(frozen=True)
class Analysis:
    """The decoded parts behind a :class:`~vmcore.report.Report`."""

    report: Report
    log: PrintkLog | None
    oops: LogAnalysis | None


def analyze(src: ByteSource, *, flat_index: FlatIndex | None = None,
            symbols: PackProvider | None = None, dump_symbols: bool = False) -> Analysis:
    """Open ``src``, read the kernel log, parse the oopses and build the report; with
    ``symbols`` (a pack provider) also read the crashed task, its stack, the modules and the
    findings from memory (the report is then ``symbolized``). With ``dump_symbols``, when no
    pack matches, the same from the dump's own kallsyms, BTF and ORC (v6.0+ kernels)."""
    dump = open_dump(src, flat_index)
    notes: list[str] = []
    failed = False
    info: VmcoreInfo | None = None
    log: PrintkLog | None = None
    oa: LogAnalysis | None = None
    try:
        info, log = read_log(dump)
        notes.extend(f"printk: {n}" for n in log.notes)
        failed = log.partial
        oa = parse_log(log.text())
    except AnalyzerError as exc:
        failed = True
        notes.append(f"log: {exc}")
        if info is None and dump.vmcoreinfo_blob is not None:
            try:
                info = parse_vmcoreinfo(dump.vmcoreinfo_blob)
            except AnalyzerError as exc2:
                notes.append(f"vmcoreinfo: {exc2}")
    cpus: tuple[CpuState, ...] = ()
    arch = dump_arch(dump, info)
    try:
        cpus = tuple(CpuState(p.number, p.pid, p.rip, p.sp)
                     for p in parse_prstatus(dump.notes, arch))
    except AnalyzerError as exc:
        failed = True
        notes.append(f"notes: {exc}")
    hdr = _header_from(dump.format, src, dump.kdump_header, info, src.size)
    kd = dump.kdump_header
    dinfo = DumpInfo(
        format=dump.format, compression=dump.compression, size=hdr.size,
        page_size=dump.page_size, source=src.name,
        bytes_fetched=getattr(src, "bytes_fetched", None),
        header_version=kd.version if kd else None, dump_level=kd.dump_level if kd else None,
        incomplete=kd.incomplete if kd else False, nr_cpus=kd.nr_cpus if kd else None,
    )
    report = _build_report(dinfo, hdr, info, log, oa, cpus, notes, failed, arch)
    report = dataclasses.replace(report, findings=log_findings(report))
    if (symbols is not None or dump_symbols) and info is not None:
        if arch not in ("x86_64", "arm64"):
            report = dataclasses.replace(report, notes=(
                *report.notes, f"memory: deep analysis reads x86_64 and arm64 dumps, not {arch}"))
        else:
            report = _with_memory(report, dump, info, symbols, oa, dump_symbols, arch)
    return Analysis(report, log, oa)


def symbols_label(pack: KernelSymbols) -> str:
    """What ``Report.symbols`` says of ``pack``: ``pack <build-id>``, or the dump's own."""
    if getattr(pack, "from_dump", False):
        return SYMBOLS_DUMP
    return f"pack {pack.build_id}"


def _with_memory(report: Report, dump: Dump, info: VmcoreInfo, symbols: PackProvider | None,
                 oa: LogAnalysis | None, dump_symbols: bool, arch: str) -> Report:
    """``report`` with what memory says, read with the provider's pack, else (no pack, or
    not the dump's kernel) with the dump's own symbols when ``dump_symbols``; any failure
    leaves it log-based with a note."""
    from vmcore.arch import kernel_memory
    from vmcore.arm64 import Arm64Memory

    notes: list[str] = []
    pack: KernelSymbols | None = None
    if symbols is not None:
        try:
            pack = symbols(info)
        except Exception as exc:  # a symbol source failing must not lose the log-based report
            notes.append(f"symbols: no pack ({type(exc).__name__}: {exc})")
        else:
            if pack is None:
                notes.append("symbols: no pack")
    try:
        mem = kernel_memory(dump, info)
    except AnalyzerError as exc:
        return dataclasses.replace(report, partial=True, notes=(
            *report.notes, *notes, f"memory: {type(exc).__name__}: {exc}"))
    if pack is not None:
        done = _deep(report, mem, dump, info, pack, oa, notes, arch)
        if done is not None:
            return done
    if dump_symbols:
        from vmcore.dumpsyms import DumpSymbols, symbols_from_dump

        try:
            own: DumpSymbols
            if isinstance(mem, Arm64Memory):
                from vmcore.arm64_deep import dump_symbols_arm64

                own = dump_symbols_arm64(mem, info)
            else:
                own = symbols_from_dump(mem.read, info)
        except AnalyzerError as exc:
            notes.append(f"symbols: none from the dump ({exc})")
        else:
            notes.extend(f"symbols: {n}" for n in own.notes)
            done = _deep(report, mem, dump, info, own, oa, notes, arch)
            late = tuple(f"symbols: {n}" for n in own.late_notes())
            if done is not None:
                return dataclasses.replace(done, notes=(*done.notes, *late),
                                           partial=done.partial or bool(own.notes or late))
            notes.extend(late)
    failed = any(n.startswith("memory:") for n in notes)
    return dataclasses.replace(report, notes=(*report.notes, *notes),
                               partial=report.partial or failed)


def _deep(report: Report, mem: VirtualMemory, dump: Dump, info: VmcoreInfo,
          pack: KernelSymbols, oa: LogAnalysis | None, notes: list[str],
          arch: str = "x86_64") -> Report | None:
    """``report`` with the memory analysis on ``pack``; None (and a note) when it failed."""
    from vmcore.arm64 import Arm64Memory
    from vmcore.deep import analyze_memory, report_parts
    from vmcore.x86_64 import KernelMemory

    primary = oa.primary if oa else None
    oops_cpu = primary.cpu if primary else None
    klass = oa.klass if oa else "unknown"
    fault = primary.fault_address if primary else None
    rip = primary.rip if primary else None
    try:
        cpus = parse_prstatus(dump.notes, arch)
        if isinstance(mem, Arm64Memory):
            from vmcore.arm64_deep import analyze_memory_arm64

            ma = analyze_memory_arm64(mem, info, pack, cpus, oops_cpu=oops_cpu, klass=klass,
                                      fault_address=fault, bug_location=report.bug_location,
                                      rip=rip)
        else:
            assert isinstance(mem, KernelMemory)
            ma = analyze_memory(mem, info, pack, cpus, oops_cpu=oops_cpu, klass=klass,
                                fault_address=fault, bug_location=report.bug_location,
                                rip=rip)
    except Exception as exc:  # the analyzer must return a report whatever memory holds
        notes.append(f"memory: {type(exc).__name__}: {exc}")
        return None
    mi, findings = report_parts(ma)
    return dataclasses.replace(report, symbolized=True, memory=mi,
                               findings=merge_findings(findings, report.findings),
                               partial=report.partial or ma.partial,
                               symbols=symbols_label(pack),
                               notes=(*report.notes, *notes))


# "[    4.067940] [     T95] " / "[    4.067940] " as dmesg, makedumpfile --dump-dmesg and
# vmcore-dmesg print them.
_DMESG_PREFIX = re.compile(r"^\[\s*\d+\.\d+\]\s?(?:\[\s*[TC]\d+\]\s?)?")
MAX_LOG_TEXT = 16 * 1024 * 1024


def analyze_log(text: bytes, *, source: str) -> Analysis:
    """A report from a kernel log alone (a log-only shipment: ``dmesg.<STAMP>``,
    ``vmcore-dmesg.txt``): everything the log says, nothing from memory."""
    if len(text) > MAX_LOG_TEXT:
        text = text[-MAX_LOG_TEXT:]  # the oops and panic are at the end
    lines = [_DMESG_PREFIX.sub("", ln) for ln in
             text.decode("utf-8", errors="replace").replace("\x00", "\ufffd").splitlines()]
    oa = parse_log("\n".join(lines))
    hdr = DumpHeader(format="log-only", compression="none", size=len(text), kernel_release=None,
                     kernel_version=None, machine=None, build_id=None, crash_time=None,
                     page_size=None, nr_cpus=None, dump_level=None, incomplete=False)
    dinfo = DumpInfo(format="log-only", compression="none", size=len(text), page_size=0,
                     source=source)
    arch = oa.primary.arch if oa.primary else None
    report = _build_report(dinfo, hdr, None, None, oa, (), [], False, arch)
    report = dataclasses.replace(report, findings=log_findings(report))
    return Analysis(report, None, oa)


def _kernel_info(hdr: DumpHeader, info: VmcoreInfo | None, oa: LogAnalysis | None,
                 primary: Oops | None, arch: str | None) -> KernelInfo:
    phys_base = None
    if info is not None and "phys_base" in info.numbers:
        phys_base = info.numbers["phys_base"] & (2**64 - 1)
    return KernelInfo(
        release=hdr.kernel_release or (primary.kernel_release if primary else None),
        version=hdr.kernel_version or (primary.kernel_version if primary else None),
        build_id=hdr.build_id,
        machine=hdr.machine,
        kernel_offset=(info.kernel_offset if info else None)
        if not (oa and oa.kernel_offset is not None) else oa.kernel_offset,
        phys_base=phys_base,
        arch=arch,
    )


def _panic_info(oa: LogAnalysis | None, primary: Oops | None) -> PanicInfo:
    return PanicInfo(
        message=oa.panic_message if oa else None,
        klass=oa.klass if oa else "unknown",
        qualifiers=oa.qualifiers if oa else (),
        headline=primary.headline if primary else None,
        line=f"Kernel panic - not syncing: {oa.panic_message}"
        if oa and oa.panic_message is not None
        else (primary.die_line or primary.headline) if primary else None,
    )


def _taint_info(primary: Oops) -> TaintInfo | None:
    t = primary.taint
    if t is None:
        return None
    return TaintInfo(
        string=t.text, flags=tuple(f.letter for f in t.flags),
        letters="" if t.mask == 0 and not t.unknown
        else ("P" if t.mask & 1 else "G") + t.letters.replace("P", ""),
        names=tuple(f.name for f in t.flags), meanings=tuple(f.meaning for f in t.flags),
        mask=t.mask)


def _modules_info(primary: Oops) -> ModulesInfo | None:
    if primary.modules is None and primary.last_unloaded is None:
        return None
    mods = primary.modules or ()
    lu = primary.last_unloaded
    return ModulesInfo(
        loaded=tuple(m.name for m in mods),
        taints={m.name: m.taints for m in mods if m.taints},
        last_unloaded=lu.name if lu else None,
        last_unloaded_taints=(lu.taints or None) if lu else None)


def _fault_info(primary: Oops) -> FaultInfo | None:
    pf = primary.page_fault
    if pf is None and primary.fault_address is None:
        return None
    return FaultInfo(
        address=primary.fault_address, error_code=pf.error_code if pf else None,
        error_flags=pf.error_flags if pf else (), access=pf.access if pf else None,
        privilege=pf.privilege if pf else None, mode=pf.mode if pf else None,
        reason=pf.reason if pf else None)


def _oops_summaries(oa: LogAnalysis | None) -> tuple[OopsSummary, ...]:
    return tuple(
        OopsSummary(o.headline, o.klass, o.qualifiers, o.cpu, o.pid, o.comm,
                    o.rip.text if o.rip else None,
                    f"{o.die_reason}: {o.die_error_code:04x} [#{o.die_counter}]"
                    if o.die_reason is not None and o.die_error_code is not None else None,
                    f"{o.bug_file}:{o.bug_line}" if o.bug_file else None, len(o.frames))
        for o in (oa.oopses if oa else ()))


def _build_report(dinfo: DumpInfo, hdr: DumpHeader, info: VmcoreInfo | None,
                  log: PrintkLog | None, oa: LogAnalysis | None, cpus: tuple[CpuState, ...],
                  notes: list[str], failed: bool, arch: str | None = None) -> Report:
    primary: Oops | None = oa.primary if oa else None
    task = TaskInfo(primary.comm, primary.pid, primary.cpu, primary.uid) if primary \
        else TaskInfo(None, None, None)
    taint = modules = rip = fault = None
    frames: tuple[FrameInfo, ...] = ()
    bug_location = None
    if primary is not None:
        taint, modules, fault = _taint_info(primary), _modules_info(primary), \
            _fault_info(primary)
        if primary.rip is not None:
            r = primary.rip
            rip = RipInfo(r.text, r.function, r.offset, r.size, r.module, r.address)
        frames = tuple(FrameInfo(f.location.function, f.location.offset, f.location.size,
                                 f.location.module, f.location.address, f.reliable, f.context)
                       for f in primary.frames)
        if primary.bug_file:
            bug_location = f"{primary.bug_file}:{primary.bug_line}"
    if oa is not None and not oa.oopses and oa.panic_message is None:
        notes.append("oops: no oops or panic message in the kernel log")
    return Report(
        dump=dinfo, kernel=_kernel_info(hdr, info, oa, primary, arch),
        crash_time=hdr.crash_time,
        panic=_panic_info(oa, primary), task=task,
        taint=taint, modules=modules, rip=rip, fault=fault, bug_location=bug_location,
        frames=frames, oopses=_oops_summaries(oa), cpus=cpus,
        log=LogInfo(len(log.records), log.partial) if log else None,
        partial=failed,
        notes=tuple(notes),
    )
