"""From an analysis report to a signature's inputs, with the findings the log alone supports.

The log-based ``use-after-module-unload`` finding: the faulting RIP is a bare address (no
symbol, no module) inside the x86_64 module mapping area while the log names a last unloaded
module — the kernel jumped into module text that no longer exists. The memory-based analysis
(with symbols) confirms it against the module list; this one needs only the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from signature import (
    Finding,
    Frame,
    Signature,
    SignatureInput,
    compute_signature,
    normalize_function,
)
from signature.explain import Explanation, explain
from signature.titles import Title, TitleInput, compute_title
from vmcore.report import Report

__all__ = ["MODULES_END", "MODULES_VADDR", "Signed", "corruption", "log_findings",
           "memory_findings", "report_title", "sign_report", "signature_input", "title_input"]

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
    frames = tuple(Frame(f.function, f.module, f.reliable) for f in report.frames)
    taint = report.taint.letters if report.taint is not None else ""
    return SignatureInput(panic_class=report.panic.klass, rip=rip, frames=frames,
                          taint_letters=taint, findings=log_findings(report), source="log")


def corruption(report: Report) -> str | None:
    """Why the primary oops cannot be trusted to name the crash, or None: it was cut short or
    another CPU's report was printed into it (its CPU line, RIP and trace went elsewhere), and
    memory gave no stack to fall back on."""
    if not report.oopses:
        return None
    o = report.oopses[0]
    if o.rip is not None or o.frames or (report.memory is not None and report.memory.frames):
        return None
    if len(report.oopses) > 1:
        return "interleaved"  # its CPU line, RIP or trace went to the report after it
    return "truncated"


def title_input(report: Report, inputs: SignatureInput, sig: Signature) -> TitleInput:
    """The facts of a report a title is chosen from, in the order of its data-file fields."""
    facts: list[tuple[str, str]] = []
    why = corruption(report)
    if why is not None:
        facts.append(("corrupted", why))
    facts.extend(("finding", f"{f.kind}({f.module})" if f.module else f.kind)
                 for f in inputs.findings)
    facts.append(("class", report.panic.klass))
    if report.panic.headline:
        facts.append(("headline", report.panic.headline))
    if report.oopses and report.oopses[0].die:
        facts.append(("die", report.oopses[0].die))
    if report.bug_location:
        facts.append(("location", report.bug_location))
    if report.fault is not None and report.fault.access:
        facts.append(("access", report.fault.access))
    if inputs.rip is not None and inputs.rip.function:
        facts.append(("rip", normalize_function(inputs.rip.function)))
    if report.panic.message is not None:
        facts.append(("panic", report.panic.message))
    return TitleInput(tuple(facts), sig.frames)


def report_title(report: Report, inputs: SignatureInput | None = None,
                 sig: Signature | None = None) -> Title:
    """The title of a report (its signature is computed when not given)."""
    inputs = inputs or signature_input(report)
    sig = sig or compute_signature(inputs)
    return compute_title(title_input(report, inputs, sig))


@dataclass(frozen=True)
class Signed:
    """Everything the signature step makes of one report."""

    inputs: SignatureInput
    signature: Signature
    title: Title
    explanation: Explanation


def sign_report(report: Report) -> Signed:
    """The signature, title and explanation of a report."""
    inputs = signature_input(report)
    sig = compute_signature(inputs)
    title = report_title(report, inputs, sig)
    return Signed(inputs, sig, title, explain(inputs, sig, title))
