"""From an analysis report to a signature's inputs, with the findings the log alone supports.

The log-based ``use-after-module-unload`` finding: the faulting RIP is a bare address (no
symbol, no module) inside the x86_64 module mapping area while the log names a last unloaded
module — the kernel jumped into module text that no longer exists. The memory-based analysis
(with symbols) confirms it against the module list; this one needs only the log.
"""

from __future__ import annotations

from analyzer.report import Report
from analyzer.signature import Finding, Frame, SignatureInput

__all__ = ["MODULES_END", "MODULES_VADDR", "log_findings", "signature_input"]

# x86_64 module mapping space (Documentation/arch/x86/x86_64/mm.rst): 1520 MiB from
# 0xffffffffa0000000; with KASLR, modules load from 0xffffffffc0000000 upwards.
MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000


def log_findings(report: Report) -> tuple[Finding, ...]:
    """Findings supported by the kernel log alone."""
    out: list[Finding] = []
    rip = report.rip
    mods = report.modules
    if (rip is not None and rip.function is None and rip.address is not None
            and MODULES_VADDR <= rip.address < MODULES_END
            and mods is not None and mods.last_unloaded):
        out.append(Finding("use-after-module-unload", mods.last_unloaded))
    if report.fault is not None and report.fault.address is not None \
            and report.fault.address < 4096 and report.panic.klass == "page_fault":
        out.append(Finding("null-pointer-dereference"))
    return tuple(out)


def signature_input(report: Report) -> SignatureInput:
    """The signature input of a log-based report."""
    rip = None
    if report.rip is not None:
        rip = Frame(report.rip.function, report.rip.module, True)
    frames = tuple(Frame(f.function, f.module, f.reliable) for f in report.frames)
    taint = report.taint.letters if report.taint is not None else ""
    return SignatureInput(panic_class=report.panic.klass, rip=rip, frames=frames,
                          taint_letters=taint, findings=log_findings(report), source="log")
