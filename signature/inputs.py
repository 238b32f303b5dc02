"""From an analysis report to a signature's inputs, with the findings the log alone supports.

The log-based findings (use after module unload, NULL dereference) are computed by
:func:`vmcore.findings.log_findings`, the function that puts them in the report too; the
memory-based analysis (with symbols) confirms them against the module list.
"""

from __future__ import annotations

import re
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

# Panic classes whose panicking task is the detector, not the culprit: a hung-task panic runs
# in khungtaskd (its stack is watchdog -> kthread); the blocked task's stack is in the log.
_DETECTOR_PANICS = frozenset({"hung_task"})
# Lockups and stalls are detected from an interrupt: the culprit is the context it
# interrupted — the task that would not let go of the CPU — even when the watchdog's timer
# landed in a softirq run on that task's interrupt exit (6.12 soft lockup: the report's RIP
# is sched_balance_update_blocked_averages, the spinning task's RIP is further down).
_INTERRUPTED_CULPRIT = frozenset({"soft_lockup", "hard_lockup", "rcu_stall"})
_IRQ_ENTRY = re.compile(r"^(asm_sysvec_\w+|asm_common_interrupt|asm_exc_nmi)$")


def _interrupted_task(rip: Frame | None, frames: tuple[Frame, ...]
                      ) -> tuple[Frame | None, tuple[Frame, ...]]:
    """Of a lockup report: the task context an interrupt entry in the trace interrupted (the
    reliable frame after the entry, as its printed registers give it) and the frames below
    it; unchanged when the trace shows none."""
    for i, f in enumerate(frames[:-1]):
        if f.reliable and f.function and _IRQ_ENTRY.match(normalize_function(f.function)):
            below = next((j for j in range(i + 1, len(frames)) if frames[j].reliable), None)
            if below is not None:
                return frames[below], frames[below + 1:]
    return rip, frames


def signature_input(report: Report) -> SignatureInput:
    """The signature input of a report: the memory unwind and findings of a symbolized
    report, else (``source`` ``log``) the printed oops and the log-based findings."""
    mem = report.memory
    if (report.symbolized and mem is not None and mem.frames
            and report.panic.klass not in _DETECTOR_PANICS):
        # From the exception RIP down (the frames above it are the crash path); a walk
        # without an exception frame (a direct panic) keeps every frame. The exception at the
        # log's RIP (else the first) is the crash: one further down is the context it
        # interrupted (a timer callback's oops in softirq, on top of the idle loop's halt);
        # for a lockup the last one is.
        exc = [i for i, f in enumerate(mem.frames) if f.exception]
        trapped = _findings.trapping_frame(mem.frames, report.rip)  # None: no exception
        if trapped is not None:
            at = exc[-1] if report.panic.klass in _INTERRUPTED_CULPRIT else trapped
            first = mem.frames[at]
            rip_frame: Frame | None = Frame(first.function, first.module, True)
            rest = mem.frames[at + 1:]
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
        # bug is one signature on both architectures (the architecture is a facet, never
        # part of the key).
        frames = ()
    if report.panic.klass in _INTERRUPTED_CULPRIT:
        rip, frames = _interrupted_task(rip, frames)
    return SignatureInput(panic_class=report.panic.klass, rip=rip, frames=frames,
                          taint_letters=taint, findings=findings, source="log")


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
