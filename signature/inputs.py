"""From an analysis report to a signature's inputs, with the findings the log alone supports.

The log-based ``use-after-module-unload`` finding: the faulting RIP (arm64: ``pc``) is a bare
address (no symbol, no module) inside the module mapping area of the report's architecture
while the log names a last unloaded module — the kernel jumped into module text that no longer
exists. The memory-based analysis (with symbols) confirms it against the module list; this one
needs only the log.

The architecture is a facet of a crash, never part of its key: the same bug on x86_64 and
arm64 gets one signature. Where the two kernels print the same crash differently, the inputs
are made alike here (see :func:`signature_input`).
"""

from __future__ import annotations

from signature import Finding, Frame, SignatureInput
from vmcore.report import Report

__all__ = ["ARM64_MODULES_END", "ARM64_MODULES_VADDR", "MODULES_END", "MODULES_VADDR",
           "log_findings", "memory_findings", "signature_input"]

# x86_64 module mapping space (Documentation/arch/x86/x86_64/mm.rst): 1520 MiB from
# 0xffffffffa0000000; with KASLR, modules load from 0xffffffffc0000000 upwards.
MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000
# arm64 (48- and 52-bit VA kernels since 5.4): modules are placed near the randomized kernel
# image, anywhere in [MODULES_VADDR, VMALLOC_END) = [_PAGE_END(48), the vmemmap); the image
# itself is symbolized, so a bare address there is module or vmalloc text.
ARM64_MODULES_VADDR = 0xFFFF800000000000
ARM64_MODULES_END = 0xFFFFFC0000000000


def _in_module_area(address: int, arch: str | None) -> bool:
    if arch == "arm64":
        return ARM64_MODULES_VADDR <= address < ARM64_MODULES_END
    return MODULES_VADDR <= address < MODULES_END


def log_findings(report: Report) -> tuple[Finding, ...]:
    """Findings supported by the kernel log alone."""
    out: list[Finding] = []
    rip = report.rip
    mods = report.modules
    if (rip is not None and rip.function is None and rip.address is not None
            and _in_module_area(rip.address, report.kernel.arch)
            and mods is not None and mods.last_unloaded):
        out.append(Finding("use-after-module-unload", mods.last_unloaded))
    if report.fault is not None and report.fault.address is not None \
            and report.fault.address < 4096 and report.panic.klass == "page_fault":
        out.append(Finding("null-pointer-dereference"))
    return tuple(out)


def memory_findings(report: Report) -> tuple[Finding, ...]:
    """The report's findings from memory (symbolized reports only)."""
    # Only a use after unload is keyed by its module, as the log-based finding is; the
    # module of a NULL dereference is already in the frames.
    return tuple(Finding(f.kind, f.module if f.kind == "use-after-module-unload" else None)
                 for f in report.findings if f.kind in _SIGNATURE_KINDS)


# Finding kinds that name a bug (BUG/WARN locations are already in the panic class and frames).
_SIGNATURE_KINDS = frozenset({"use-after-module-unload", "null-pointer-dereference"})


_PANIC = frozenset({"panic", "vpanic", "nmi_panic"})


def signature_input(report: Report) -> SignatureInput:
    """The signature input of a report: the memory unwind and findings of a symbolized
    report, else (``source`` ``log``) the printed oops and the log-based findings."""
    mem = report.memory
    if report.symbolized and mem is not None and mem.frames:
        # From the exception RIP down (the frames above it are the crash path); a walk
        # without an exception frame (a direct panic) keeps every frame.
        exc = [i for i, f in enumerate(mem.frames) if f.exception]
        if exc:
            first = mem.frames[exc[-1]]
            rip_frame: Frame | None = Frame(first.function, first.module, True)
            rest = mem.frames[exc[-1] + 1:]
        else:
            # a direct panic: the frames above panic() are its own delay loop or kexec
            calls = [i for i, f in enumerate(mem.frames) if f.function in _PANIC]
            rip_frame, rest = None, mem.frames[calls[-1] + 1 if calls else 0:]
        taint = report.taint.letters if report.taint is not None else ""
        return SignatureInput(
            panic_class=report.panic.klass, rip=rip_frame,
            frames=tuple(Frame(f.function, f.module, f.reliable) for f in rest),
            taint_letters=taint, findings=memory_findings(report), source="memory")
    rip = None
    if report.rip is not None:
        rip = Frame(report.rip.function, report.rip.module, True)
    arm64 = report.kernel.arch == "arm64"
    # arm64 prints return addresses unadjusted (%pSb): after a call to a noreturn function
    # (panic) at the very end of a function, the address is the next function's +0x0, a
    # wrong name. No return address can be a function's first instruction: drop those.
    frames = tuple(Frame(f.function, f.module, f.reliable) for i, f in enumerate(report.frames)
                   if not (arm64 and i > 0 and f.offset == 0))
    taint = report.taint.letters if report.taint is not None else ""
    findings = log_findings(report)
    if rip is not None and rip.function is None and any(
            f.kind == "use-after-module-unload" for f in findings):
        # Execution in freed module text: x86_64's ORC cannot unwind from it (every caller
        # prints as a "?" guess, and is skipped), arm64's frame pointers still reach the
        # caller (kthread). The callers say nothing about the bug: keep neither, so the same
        # bug is one signature on both.
        frames = ()
    return SignatureInput(panic_class=report.panic.klass, rip=rip, frames=frames,
                          taint_letters=taint, findings=findings, source="log")
