"""From an analysis report to a signature's inputs, with the findings the log alone supports.

The log-based findings (use after module unload, NULL dereference) are computed by
:func:`vmcore.findings.log_findings`, the function that puts them in the report too; the
memory-based analysis (with symbols) confirms them against the module list.
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
from vmcore import findings as _findings
from vmcore.report import Report

__all__ = ["Signed", "corruption", "log_findings", "memory_findings", "report_title",
           "sign_report", "signature_input", "title_input"]


def log_findings(report: Report) -> tuple[Finding, ...]:
    """Findings supported by the kernel log alone (:func:`vmcore.findings.log_findings`, the
    same function that fills the report's log findings)."""
    return tuple(Finding(f.kind, f.module if f.kind == "use-after-module-unload" else None)
                 for f in _findings.log_findings(report))


def memory_findings(report: Report) -> tuple[Finding, ...]:
    """The report's findings from memory (symbolized reports only)."""
    # Only a use after unload is keyed by its module, as the log-based finding is; the
    # module of a NULL dereference is already in the frames.
    return tuple(Finding(f.kind, f.module if f.kind == "use-after-module-unload" else None)
                 for f in report.findings
                 if f.kind in _SIGNATURE_KINDS and f.source == "memory")


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
