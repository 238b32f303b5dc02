"""Oops parser: kernel log text in, typed oops records out. Pure: no dump, no I/O.

The log is split into oops records at headline lines (``BUG: …``, ``------------[ cut here ]``,
die lines, lockup and hung-task reports); each record then takes the lines that follow through
an ordered table of small line rules (``analyzer/_oops_rules.py``) until its ``---[ end
trace`` marker.
Formats are those of x86_64 kernels 4.x-6.12 (``arch/x86/mm/fault.c``, ``arch/x86/kernel/
dumpstack.c``, ``lib/dump_stack.c``, ``kernel/panic.c``, ``kernel/module``); ``docs/decoder.md``
lists the variants. Several oopses in one log are all kept; the first is the primary one.
"""

from __future__ import annotations

import re

from vmcore._oops_rules import HEADLINE_HINT, RULES, Builder, headline_kind, r_trace
from vmcore.oops_records import (
    CodeLocation,
    Frame,
    LogAnalysis,
    ModuleRef,
    Oops,
    PageFaultInfo,
    decode_pf_error,
    parse_location,
)

__all__ = [
    "CodeLocation",
    "Frame",
    "LogAnalysis",
    "ModuleRef",
    "Oops",
    "PageFaultInfo",
    "decode_pf_error",
    "parse_location",
    "parse_log",
]

_PANIC = re.compile(r"^Kernel panic - not syncing: (?P<msg>.*)$")
_KOFF = re.compile(r"^Kernel Offset: (?:0x(?P<off>[0-9a-fA-F]+) from|(?P<dis>disabled))")
_PANIC_CLASSES = (
    (re.compile(r"sysrq triggered crash"), "sysrq"),
    (re.compile(r"[Mm]achine check"), "machine_check"),
    (re.compile(r"hung_task: blocked tasks"), "hung_task"),
    (re.compile(r"softlockup: hung tasks"), "soft_lockup"),
    (re.compile(r"[Hh]ard LOCKUP"), "hard_lockup"),
    (re.compile(r"panic_on_warn"), "warning"),
    (re.compile(r"Out of memory"), "out_of_memory"),
)
_MAX_LINE = 4096
# Outside an oops a line matters only if one of these can match it: one search passes over
# the ordinary log lines (nearly all of them).
_OUTSIDE_HINT = re.compile(r"Kernel (?:panic|Offset)|Linux version |" + HEADLINE_HINT)


def _starts_new(kind: str, cur: Builder | None) -> bool:
    """Whether a headline of ``kind`` opens a new oops rather than continuing ``cur`` (a die
    line continues a ``BUG:`` headline; any headline after the CPU line starts a new one)."""
    if cur is None or cur.closed:
        return True
    if kind == "die":
        return cur.o.die_reason is not None
    return cur.seen_cpu or cur.in_trace


def parse_log(text: str) -> LogAnalysis:
    """Parse the kernel log text (one message per line, no timestamps)."""
    lines = text.splitlines()
    oopses: list[Oops] = []
    cur: Builder | None = None
    panic = None
    koff = None
    release = None

    def close(b: Builder | None, end: int) -> None:
        if b is not None and not (b.panic_only and not b.seen_cpu):
            o = b.o
            if o.klass == "unknown" and o.headline.startswith("BUG: "):
                b.set(klass="bug")
            b.set(registers=dict(b.regs), frames=tuple(b.frames), lines=(o.lines[0], end))
            oopses.append(b.o)

    for i, raw in enumerate(lines):
        if cur is None and not _OUTSIDE_HINT.search(raw):
            continue
        line = raw[:_MAX_LINE].rstrip()
        stripped = line.strip()
        m = _PANIC.match(stripped)
        if m:
            if panic is None:
                panic = m["msg"]
            # panic() dumps the stack after its message unless an oops already did: that dump
            # belongs to an open report (sysrq, WARN with panic_on_warn) or is a report itself.
            if cur is None or cur.closed or cur.seen_cpu:
                close(cur, i)
                cur = Builder(stripped, i)
                cur.set(klass=next((k for rx, k in _PANIC_CLASSES if rx.search(m["msg"])),
                                   "panic"))
                cur.panic_only = True
            continue
        m = _KOFF.match(stripped)
        if m:
            koff = 0 if m["dis"] else int(m["off"], 16)
            continue
        if release is None and stripped.startswith("Linux version "):
            release = stripped.split()[2]
        kind = headline_kind(stripped)
        if kind is not None and _starts_new(kind, cur):
            close(cur, i)
            cur = Builder(stripped, i)
        if cur is None:
            continue
        for rule in RULES:
            if rule(cur, line if rule is r_trace else stripped):
                break
        if cur.closed:
            close(cur, i + 1)
            cur = None
    close(cur, len(lines))
    if release is None:
        release = next((o.kernel_release for o in oopses if o.kernel_release), None)
    klass = "none"
    quals: tuple[str, ...] = ()
    if oopses:
        klass, quals = oopses[0].klass, oopses[0].qualifiers
    if panic is not None and klass in ("none", "unknown"):
        klass = next((k for rx, k in _PANIC_CLASSES if rx.search(panic)), "panic")
    return LogAnalysis(tuple(oopses), panic, koff, release, klass, quals)
