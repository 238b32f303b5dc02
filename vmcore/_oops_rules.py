"""The oops parser's line rules: headline detection and one small rule per line kind.

Private to :mod:`vmcore.oops`. Each rule takes the record being built and a line and returns
True when it consumed the line; :data:`RULES` is their order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields, replace

from vmcore.arm64_esr import decode_esr
from vmcore.oops_records import (
    Frame,
    ModuleRef,
    Oops,
    PageFaultInfo,
    decode_pf_error,
    parse_location,
)
from vmcore.taint import decode_taint

_HEX = r"[0-9a-fA-F]"
__all__ = ["HEADLINE_HINT", "RULES", "Builder", "arm64_frames", "headline_kind", "r_trace"]

# -- headlines -------------------------------------------------------------------------------

_H_NULL = re.compile(rf"^BUG: kernel NULL pointer dereference, address: (?P<a>{_HEX}+)")
_H_PF = re.compile(rf"^BUG: unable to handle page fault for address: (?P<a>{_HEX}+)")
_H_OLD = re.compile(  # <= 5.0
    rf"^BUG: unable to handle kernel (?P<k>NULL pointer dereference|paging request) at "
    rf"(?P<a>{_HEX}+)")
_H_CUT = re.compile(r"^-+\[ cut here \]-+$")
_H_BUGAT = re.compile(r"^kernel BUG at (?P<file>.+?):(?P<line>\d+)!$")
_H_WARN = re.compile(
    r"^WARNING: (?:CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) )?at (?P<file>\S+?):(?P<line>\d+)"
    r"(?:\s+(?P<loc>.+))?$")
_H_SOFT = re.compile(
    r"^(?:\S+ )?(?:watchdog: )?BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for (?P<s>\d+)s! "
    r"\[(?P<comm>.*):(?P<pid>\d+)\]$")
_H_HARD = re.compile(r"(?:^|: )Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)")
_H_HUNG = re.compile(
    r"^INFO: task (?P<comm>.*):(?P<pid>\d+) blocked for more than (?P<s>\d+) seconds\.$")
_H_RCU = re.compile(r"^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:stall|stalls)")
_H_SYSRQ = re.compile(r"^(?:sysrq|SysRq) ?: Trigger a crash")
_H_MCE = re.compile(r"^(?:mce: )?\[Hardware Error\]: .*Machine Check|^Machine check: ")
_H_BUG = re.compile(r"^BUG: (?P<what>.+)$")
# arm64 (arch/arm64/mm/fault.c __do_kernel_fault): "NULL pointer dereference", "paging
# request", "execute from non-executable memory", "write to read-only memory", …
_H_A64 = re.compile(rf"^Unable to handle kernel (?P<k>.+?) at virtual address (?P<a>{_HEX}+)")
# arm64 die(): "Internal error: %s: %016lx [#%d] FLAGS" (5.x prints the ESR as %08x)
_DIE_A64 = re.compile(
    rf"^Internal error: (?P<reason>.+?): (?P<code>{_HEX}{{8,16}}) \[#(?P<n>\d+)\]"
    r"(?P<flags>(?: \w+)*)$")
_DIE = re.compile(
    rf"^(?:Oops: )?(?P<reason>.+?): (?P<code>{_HEX}{{4}}) \[#(?P<n>\d+)\](?P<flags>(?: \w+)*)$")
_NONCANON = re.compile(rf"non-canonical address 0x(?P<a>{_HEX}+)")


# Every headline above contains one of these: one search rules out the ordinary log line
# (nearly all of them) before the fourteen specific patterns are tried.
HEADLINE_HINT = (r"BUG|WARNING: |cut here|LOCKUP|INFO: |sysrq|SysRq|Machine [Cc]heck|\[#\d|"
                 r"Unable to handle kernel ")
_MAYBE_HEADLINE = re.compile(HEADLINE_HINT)


def headline_kind(line: str) -> str | None:
    """The headline kind of ``line``, or None."""
    if not _MAYBE_HEADLINE.search(line):
        return None
    for kind, rx in (("null", _H_NULL), ("pf", _H_PF), ("pf_old", _H_OLD), ("cut", _H_CUT),
                     ("bugat", _H_BUGAT), ("warn", _H_WARN), ("soft", _H_SOFT),
                     ("hard", _H_HARD), ("hung", _H_HUNG), ("rcu", _H_RCU),
                     ("sysrq", _H_SYSRQ), ("mce", _H_MCE), ("die", _DIE), ("bug", _H_BUG),
                     ("a64", _H_A64), ("die", _DIE_A64)):
        if rx.search(line):
            return kind
    return None


# -- line rules ------------------------------------------------------------------------------

_CPU = re.compile(
    r"^CPU: (?P<cpu>\d+) (?:UID: (?P<uid>\d+) )?PID: (?P<pid>\d+) Comm: (?P<comm>.*?) "
    r"(?P<kdump>Kdump: loaded )?(?:Not tainted|Tainted: (?P<taint>[A-Z][A-Z ]*?))\s+"
    r"(?P<rel>\d\S*)(?: (?P<ver>#.*))?$")
_TAINT_LIST = re.compile(r"^Tainted: (?P<t>\[[A-Z]\]=\w+(?:, \[[A-Z]\]=\w+)*)$")
_HW = re.compile(r"^Hardware name: (?P<hw>.*)$")
_PF_LINE = re.compile(
    r"^#PF: (?P<priv>supervisor|user) (?P<acc>instruction fetch|write access|read access)"
    r" in (?P<mode>user|kernel) mode$")
_PF_CODE = re.compile(rf"^#PF: error_code\(0x(?P<c>{_HEX}+)\)(?: - (?P<why>.*))?$")
_RIP = re.compile(rf"^RIP: (?P<cs>{_HEX}{{4}}):(?P<loc>.+)$")
_RIP_OLD = re.compile(  # <= 4.8: RIP: 0010:[<addr>]  [<addr>] sym+0x1/0x2 [mod]
    rf"^RIP: (?P<cs>{_HEX}{{4}}):\[<(?P<a>{_HEX}+)>\]\s+(?:\[<{_HEX}+>\]\s+)?(?P<loc>.+)$")
_CODE = re.compile(r"^Code: (?P<b>.*)$")
_REG = re.compile(rf"\b(?P<n>[A-Za-z][A-Za-z0-9_]{{1,7}}):\s*(?P<v>{_HEX}+)(?:\({_HEX}+\))?")
_RSP = re.compile(rf"^RSP: (?P<ss>{_HEX}{{4}}):(?P<rsp>{_HEX}{{16}})")
_REG_LINE = re.compile(r"^(?:RSP|RAX|RDX|RBP|R10|R13|FS|CS|CR2|DR0|DR3|PKRU|EAX|ESI):")
_TRACE = re.compile(r"^Call [Tt]race:$")  # arm64 (and most other arches) spell it "trace"
_SECTION = re.compile(r"^\s*<(?P<end>/)?(?P<s>IRQ|NMI|SOFTIRQ|TASK|EOI|EOE|#\w+)>$")
_FRAME = re.compile(
    rf"^\s*(?:\[<(?P<addr>{_HEX}+)>\]\s*)?(?P<q>\? )?(?P<loc>\S+(?:\s+\[[^\]]+\])?)$")
_MODULES = re.compile(r"^Modules linked in:(?P<rest>.*)$")
_MODULE = re.compile(r"^(?P<name>[\w\-]+)(?:\((?P<t>[A-Z+\-]+)\))?$")
_LAST = re.compile(r"\[last unloaded: (?P<name>[\w\-]+)(?:\((?P<t>[A-Z+\-]+)\))?\]")
# arm64 register dump (arch/arm64/kernel/process.c __show_regs) and fault report
# (arch/arm64/mm/fault.c mem_abort_decode / data_abort_decode)
_A64_PC = re.compile(r"^(?P<r>pc|lr) : (?P<loc>.+)$")
_A64_SP = re.compile(rf"^sp : (?P<v>{_HEX}{{16}})$")
_A64_PSTATE = re.compile(rf"^pstate: (?P<v>{_HEX}{{8}})(?: \(.*\))?$")
_A64_X = re.compile(rf"^x\d+\s*: {_HEX}{{16}}")
_A64_XREG = re.compile(rf"\b(?P<n>x\d+)\s*: (?P<v>{_HEX}{{16}})")
_A64_ESR = re.compile(rf"^ESR = 0x(?P<v>{_HEX}+)$")
_A64_ABORT = re.compile(
    r"^(?:Mem abort info:|Data abort info:|EC = 0x|SET = |EA = |FSC = 0x|ISV = |CM = |"
    r"Access size = |SSE = |SF = |TagAccess = |GCS = |Overlay = |"
    r"(?:user|swapper) pgtable: |\[[0-9a-f]{16}\] pgd=)")
_END = re.compile(r"^-+\[ end (?:trace (?P<id>[0-9a-f]+)|Kernel panic - not syncing: .*) \]-+$")


_OOPS_FIELDS = frozenset(f.name for f in fields(Oops))


class Builder:
    """Mutable state while one oops's lines are read; frozen into :class:`Oops` at the end."""

    def __init__(self, headline: str, start: int):
        self.o = Oops(headline=headline, lines=(start, start + 1))
        self.regs: dict[str, int] = {}
        self.frames: list[Frame] = []
        self.in_trace = False
        self.in_modules = False
        self.sections: list[str] = []
        self.closed = False
        self.seen_cpu = False
        self.panic_only = False

    def set(self, **kw: object) -> None:
        # dataclasses.replace re-runs __init__ over every field: a tenth of a millisecond per
        # oops line. A frozen Oops has no __post_init__ to re-run, so copying its fields with
        # the changes is the same thing.
        unknown = kw.keys() - _OOPS_FIELDS
        if unknown:
            raise TypeError(f"Oops has no field {sorted(unknown)[0]!r}")
        o = object.__new__(Oops)
        o.__dict__.update(self.o.__dict__, **kw)
        self.o = o


def _r_headline(b: Builder, line: str) -> bool:
    o = b.o
    for rx, quals in ((_H_NULL, ("null_dereference",)), (_H_PF, ())):
        m = rx.match(line)
        if m:
            b.set(fault_address=int(m["a"], 16), klass="page_fault",
                  qualifiers=tuple(dict.fromkeys(o.qualifiers + quals)))
            return True
    m = _H_OLD.match(line)
    if m:
        quals = ("null_dereference",) if m["k"].startswith("NULL") else ()
        b.set(fault_address=int(m["a"], 16), klass="page_fault", qualifiers=quals)
        return True
    m = _H_A64.match(line)
    if m:
        quals = {"NULL pointer dereference": ("null_dereference",),
                 "execute from non-executable memory": ("instruction_fetch",)}.get(m["k"], ())
        b.set(fault_address=int(m["a"], 16), klass="page_fault", arch="arm64",
              qualifiers=tuple(dict.fromkeys(o.qualifiers + quals)))
        return True
    m = _H_BUGAT.match(line)
    if m:
        b.set(bug_file=m["file"], bug_line=int(m["line"]), klass="kernel_bug")
        return True
    m = _H_WARN.match(line)
    if m:
        b.set(bug_file=m["file"], bug_line=int(m["line"]), klass="warning",
              warning_function=parse_location(m["loc"]) if m["loc"] else None)
        if m["cpu"]:
            b.set(cpu=int(m["cpu"]), pid=int(m["pid"]))
        return True
    m = _H_SOFT.search(line)
    if m:
        b.set(klass="soft_lockup", cpu=int(m["cpu"]), lockup_seconds=int(m["s"]),
              comm=m["comm"], pid=int(m["pid"]))
        return True
    m = _H_HARD.search(line)
    if m:
        b.set(klass="hard_lockup", cpu=int(m["cpu"]))
        return True
    m = _H_HUNG.match(line)
    if m:
        b.set(klass="hung_task", comm=m["comm"], pid=int(m["pid"]), lockup_seconds=int(m["s"]))
        return True
    for rx, klass in ((_H_RCU, "rcu_stall"), (_H_SYSRQ, "sysrq"), (_H_MCE, "machine_check")):
        if rx.search(line):
            if b.o.klass == "unknown":
                b.set(klass=klass)
            return True
    return _H_CUT.match(line) is not None


def _r_die(b: Builder, line: str) -> bool:
    m = _DIE.match(line)
    a64 = None
    if not m:
        m = a64 = _DIE_A64.match(line)
    if not m or b.o.die_reason is not None:
        return False
    reason = m["reason"]
    kw: dict[str, object] = dict(
        die_line=line, die_reason=reason, die_error_code=int(m["code"], 16),
        die_counter=int(m["n"]), die_flags=tuple(m["flags"].split()))
    if a64:
        # arm64 die() prints the ESR as the error code; "Oops - BUG" (brk from BUG()),
        # "Oops - undef" (undefined instruction), "Oops - BTI", "Oops - FPAC", …
        kw["arch"] = "arm64"
        if b.o.esr is None:
            _set_esr(b, int(m["code"], 16))
        if reason == "Oops - BUG":
            kw["klass"] = "kernel_bug" if b.o.klass in ("unknown", "kernel_bug") else b.o.klass
        elif reason == "Oops - undef" and b.o.klass == "unknown":
            kw["klass"] = "invalid_opcode"
        elif b.o.klass == "unknown" and reason != "Oops":
            kw["klass"] = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")
        b.set(**kw)
        return True
    nc = _NONCANON.search(reason)
    if reason.startswith("general protection fault"):
        kw["klass"] = "general_protection_fault"
        if nc:
            kw["qualifiers"] = ("non_canonical",)
            kw["fault_address"] = int(nc["a"], 16)
    elif reason.startswith("invalid opcode") and b.o.klass == "unknown":
        kw["klass"] = "invalid_opcode"
    elif b.o.klass == "unknown" and reason in ("kernel stack overflow (double-fault)",
                                               "stack guard page"):
        kw["klass"] = "stack_overflow"  # 5.10's spelling, then 6.1+'s: one class
    elif b.o.klass == "unknown" and reason != "Oops":
        kw["klass"] = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")
    b.set(**kw)
    return True


def _r_pf(b: Builder, line: str) -> bool:
    m = _PF_LINE.match(line)
    pf = b.o.page_fault or PageFaultInfo()
    if m:
        acc = m["acc"].replace(" access", "")
        pf = replace(pf, access=acc, privilege=m["priv"], mode=m["mode"])
        quals = b.o.qualifiers
        if acc == "instruction fetch" and "instruction_fetch" not in quals:
            quals = (*quals, "instruction_fetch")
        b.set(page_fault=pf, qualifiers=quals)
        return True
    m = _PF_CODE.match(line)
    if m:
        code = int(m["c"], 16)
        b.set(page_fault=replace(pf, error_code=code, error_flags=decode_pf_error(code),
                                 reason=m["why"]))
        return True
    return False


def _set_esr(b: Builder, esr: int) -> None:
    """Record the ESR and, for an abort, the page-fault view of it (as the x86 #PF lines)."""
    info = decode_esr(esr)
    b.set(esr=info, arch="arm64")
    if info.fsc is not None:
        b.set(page_fault=PageFaultInfo(
            error_code=info.esr, error_flags=info.flags, access=info.access, mode=info.mode,
            reason=info.fsc_text))
        if info.access == "instruction fetch" and "instruction_fetch" not in b.o.qualifiers:
            b.set(qualifiers=(*b.o.qualifiers, "instruction_fetch"))


def _r_arm64(b: Builder, line: str) -> bool:
    """arm64 lines: the abort report (ESR decoded from its value, the rest consumed), ``pc :``
    (the faulting location, as x86's RIP), ``lr :``, ``sp :``, ``pstate:`` and ``xN :``."""
    if b.in_trace:
        return False
    m = _A64_ESR.match(line)
    if m:
        _set_esr(b, int(m["v"], 16))
        return True
    if _A64_ABORT.match(line):
        return True
    m = _A64_PC.match(line)
    if m:
        loc = parse_location(m["loc"])
        if m["r"] == "pc":
            if b.o.rip is None:
                b.set(rip=loc, arch="arm64")
        elif b.o.lr is None:
            b.set(lr=loc)
        return True
    m = _A64_SP.match(line) or _A64_PSTATE.match(line)
    if m:
        b.regs.setdefault("SP" if line.startswith("sp") else "PSTATE", int(m["v"], 16))
        return True
    if _A64_X.match(line):
        for r in _A64_XREG.finditer(line):
            b.regs.setdefault(r["n"].upper(), int(r["v"], 16))
        return True
    return False


def _r_cpu(b: Builder, line: str) -> bool:
    m = _CPU.match(line)
    if not m:
        m2 = _TAINT_LIST.match(line)
        if m2:  # 6.x: a second line spelling the flags out; same flags as the column form
            if b.o.taint is None:
                b.set(taint=decode_taint(m2["t"]))
            return True
        return False
    if b.seen_cpu:
        return True  # a second CPU line (e.g. NMI backtrace of another CPU) is not this task
    b.seen_cpu = True
    b.set(cpu=int(m["cpu"]), pid=int(m["pid"]), comm=m["comm"],
          uid=int(m["uid"]) if m["uid"] else None, kdump_loaded=bool(m["kdump"]),
          taint=decode_taint(m["taint"] or "Not tainted"), kernel_release=m["rel"],
          kernel_version=m["ver"])
    return True


def _r_hw(b: Builder, line: str) -> bool:
    m = _HW.match(line)
    if m:
        b.set(hardware=m["hw"])
    return m is not None


def _r_rip(b: Builder, line: str) -> bool:
    m = _RIP_OLD.match(line) or _RIP.match(line)
    if not m:
        return False
    loc = parse_location(m["loc"])
    if "a" in m.groupdict() and m["a"]:
        loc = replace(loc, address=int(m["a"], 16))
    if b.o.rip is None and not b.in_trace:
        b.set(rip=loc, rip_cs=int(m["cs"], 16))
    elif b.in_trace and int(m["cs"], 16) == 0x10 and (loc.function or loc.address):
        # the registers of a kernel context the trace passes through (an interrupt taken in
        # a task): its RIP is that context's innermost frame, which the trace lines omit
        b.frames.append(Frame(loc, True, b.sections[-1] if b.sections else None))
    return True  # user-mode RIPs inside a trace are the syscall's entry


def _r_code(b: Builder, line: str) -> bool:
    m = _CODE.match(line)
    if not m:
        return False
    if b.o.code is None and b.o.code_unavailable is None:
        text = m["b"].strip()
        toks = text.split()
        # x86: bytes (or 16-bit words); arm64: 32-bit little-endian instruction words
        if toks and all(re.fullmatch(r"[<(]?(?:[0-9a-f]{2,4}|[0-9a-f]{8})[>)]?", t)
                        for t in toks):
            data = bytearray()
            fault = None
            for t in toks:
                if t[0] in "<(":
                    fault = len(data)
                h = t.strip("<>()")
                data += bytes.fromhex(h)[::-1] if len(h) in (4, 8) else bytes.fromhex(h)
            b.set(code=bytes(data), code_fault_index=fault)
        else:
            b.set(code_unavailable=text)
    return True


def _r_regs(b: Builder, line: str) -> bool:
    if not _REG_LINE.match(line):
        return False
    if b.in_trace:
        return True  # register dumps inside a trace are user/exception contexts, not the oops
    m = _RSP.match(line)
    if m:
        b.regs.setdefault("SS", int(m["ss"], 16))
        b.regs.setdefault("RSP", int(m["rsp"], 16))
        line = line[m.end():]
    for r in _REG.finditer(line):
        b.regs.setdefault(r["n"].upper(), int(r["v"], 16))
    return True


def r_trace(b: Builder, line: str) -> bool:
    if _TRACE.match(line):
        b.in_trace = True
        if line.startswith("Call trace:") and b.o.arch is None:
            b.set(arch="arm64")  # x86 prints "Call Trace:"; of the two, only arm64 this
        return True
    if not b.in_trace:
        return False
    m = _SECTION.match(line)
    if m:
        s = m["s"].lower()
        if m["end"]:
            if b.sections and b.sections[-1] == s:
                b.sections.pop()
        elif s not in ("eoi", "eoe"):
            b.sections.append(s)
        return True
    m = _FRAME.match(line)
    if m and line.startswith(" ") and ":" not in m["loc"].split()[0]:
        loc = parse_location(m["loc"])
        if loc.function is None and loc.address is None:
            return False
        if m["addr"]:
            loc = replace(loc, address=int(m["addr"], 16))
        b.frames.append(Frame(loc, m["q"] is None, b.sections[-1] if b.sections else None))
        return True
    return False


def arm64_frames(o: Oops, frames: list[Frame]) -> list[Frame]:
    """arm64's frame-pointer trace misses the caller of a leaf function (it pushed no frame
    record; the caller is only in ``lr``): put the ``lr :`` location after the ``pc`` frame
    when it names another function than the pc and than the next printed frame (a non-leaf
    function's lr points into itself or equals that next frame)."""
    lr, rip = o.lr, o.rip
    if (o.arch != "arm64" or lr is None or rip is None or lr.function is None
            or not frames or frames[0].location.text != rip.text):
        return frames
    if lr.function == rip.function or (len(frames) > 1 and frames[1].function == lr.function):
        return frames
    return [frames[0], Frame(lr, True, frames[0].context), *frames[1:]]


def _modules(text: str) -> tuple[list[ModuleRef], ModuleRef | None, bool]:
    last = None
    m = _LAST.search(text)
    if m:
        last = ModuleRef(m["name"], m["t"] or "")
        text = text[: m.start()] + text[m.end():]
    mods: list[ModuleRef] = []
    ok = True
    for tok in text.split():
        mm = _MODULE.match(tok)
        if mm:
            mods.append(ModuleRef(mm["name"], mm["t"] or ""))
        else:
            ok = False
    return mods, last, ok


def _r_modules(b: Builder, line: str) -> bool:
    m = _MODULES.match(line)
    if m:
        b.in_trace = False
        mods, last, _ok = _modules(m["rest"])
        b.set(modules=tuple(mods), last_unloaded=last)
        b.in_modules = last is None
        return True
    if b.in_modules:
        # a long list continues on the next record (LOG_LINE_MAX); accept only module syntax
        mods, last, ok = _modules(line)
        if ok and (mods or last) and not headline_kind(line):
            b.set(modules=(*(b.o.modules or ()), *mods), last_unloaded=last or b.o.last_unloaded)
            b.in_modules = last is None
            return True
        b.in_modules = False
    return False


def _r_end(b: Builder, line: str) -> bool:
    m = _END.match(line)
    if m:
        b.set(end_marker=line)
        b.closed = True
    return m is not None


# Order matters: the end marker first (it closes the record); the die line before the generic
# register rule; the trace rule after the register rule so register dumps inside a trace (user
# context at syscall entry, exception frames) neither end the trace nor become frames.
RULES: tuple[Callable[[Builder, str], bool], ...] = (
    _r_end, _r_modules, _r_die, _r_pf, _r_cpu, _r_hw, _r_rip, _r_code, _r_regs, _r_arm64,
    r_trace, _r_headline,
)

