"""Crash signatures: a human-readable string and a stable id naming "the same bug".

Built from the best frames available — a symbolized memory unwind, else the kernel's printed
Call Trace (reliable frames only), else the faulting RIP alone — after skipping the crash path
and keeping module frames tagged with their module. The panic class, findings (such as
``use-after-module-unload(vendordeferio)``) and the taint letters are part of the key, so a
tainted crash never merges with an untainted one.

Normalization makes one bug look the same on every host and kernel build: offsets, sizes
and compiler suffixes (``.isra.0``, ``.constprop.0``, ``.part.0``, ``.cold``) are dropped, bare
addresses become ``??`` and syscall wrappers lose their ABI prefixes. Thread names are not
part of a signature (a leaked kthread's name varies with the module instance).

Pure: no I/O beyond reading the packaged data files once.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The data files beside the code (not importlib.resources: it pulls tempfile, zipfile and
# urllib into every `crashfleet analyze`).
_DATA = Path(__file__).resolve().parent / "data"

__all__ = [
    "MAX_FRAMES",
    "DataRule",
    "Finding",
    "Frame",
    "FrameDecision",
    "Signature",
    "SignatureInput",
    "compute_signature",
    "load_patterns",
    "load_rules",
    "normalization_steps",
    "normalize_function",
    "walk_frames",
]

MAX_FRAMES = 5  # frames that count towards a signature (prefix frames do not)
MAX_TEXT = 255  # characters of signature text, as Socorro

_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|llvm|lto_priv)(\.\d+)?)+$")
_OFFSET = re.compile(r"\+0x[0-9a-f]+(/0x[0-9a-f]+)?$")
_SYSCALL = re.compile(r"^(__x64_sys_|__ia32_sys_|__se_sys_|__do_sys_|__ia32_compat_sys_|ksys_)")


@dataclass(frozen=True)
class Frame:
    """One stack frame: ``function`` None for an address no symbol covers."""

    function: str | None
    module: str | None = None
    reliable: bool = True


@dataclass(frozen=True)
class Finding:
    """A finding that names the bug's kind (``use-after-module-unload``) and its module."""

    kind: str
    module: str | None = None


@dataclass(frozen=True)
class SignatureInput:
    """What a signature is computed from. ``frames`` come innermost first, after the RIP
    frame (``rip``); ``source`` says where they came from (``memory``, ``log``)."""

    panic_class: str
    rip: Frame | None
    frames: tuple[Frame, ...]
    taint_letters: str
    findings: tuple[Finding, ...] = ()
    source: str = "log"


@dataclass(frozen=True)
class Signature:
    """``text`` for humans (``page_fault | use-after-module-unload(x) | ?? [OE]``), ``id`` a
    stable 16-hex-digit hash of the normalized key, ``frames`` the normalized frames used."""

    text: str
    id: str
    panic_class: str
    frames: tuple[str, ...]
    taint: str
    findings: tuple[str, ...]


def normalize_function(name: str) -> str:
    """``foo.isra.0+0x1a/0x40`` -> ``foo``; ``__x64_sys_openat`` -> ``sys_openat``."""
    name = _OFFSET.sub("", name.strip())
    name = _SUFFIX.sub("", name)
    if _SYSCALL.match(name):
        name = "sys_" + _SYSCALL.sub("", name)
    return name


def normalization_steps(name: str) -> tuple[str, ...]:
    """What :func:`normalize_function` changes in ``name``, one sentence a step."""
    steps = []
    name = name.strip()
    m = _OFFSET.search(name)
    if m:
        steps.append(f"offset {m[0]} dropped")
        name = name[: m.start()]
    m = _SUFFIX.search(name)
    if m:
        steps.append(f"compiler suffix {m[0]} dropped")
        name = name[: m.start()]
    m = _SYSCALL.match(name)
    if m:
        steps.append(f"syscall prefix {m[0]} folded to sys_")
    return tuple(steps)


@dataclass(frozen=True)
class DataRule:
    """One line of a data file: ``file`` name, 1-based ``line``, the ``pattern`` text."""

    file: str
    line: int
    pattern: str


@functools.cache
def load_rules(name: str) -> tuple[tuple[re.Pattern[str], DataRule], ...]:
    """The compiled regexes of data file ``name`` (``skip_frames.txt``, ``prefix_frames.txt``)
    with the line each comes from."""
    text = (_DATA / name).read_text(encoding="utf-8")
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((re.compile(line), DataRule(name, n, line)))
    return tuple(out)


def load_patterns(name: str) -> tuple[re.Pattern[str], ...]:
    """The compiled regexes of data file ``name``, in file order."""
    return tuple(p for p, _ in load_rules(name))


def _rule(rules: Iterable[tuple[re.Pattern[str], DataRule]], name: str) -> DataRule | None:
    return next((r for p, r in rules if p.fullmatch(name)), None)


@dataclass(frozen=True)
class FrameDecision:
    """What the signature did with one frame: ``verdict`` ``kept``, ``prefix`` (kept, not
    counted), ``skipped`` (by ``rule``), ``unreliable``, ``repeated`` or ``past budget``;
    ``raw`` the frame as given, ``text`` as the signature spells it, ``normalizations`` the
    steps from one to the other."""

    raw: str
    text: str
    verdict: str
    rule: DataRule | None
    normalizations: tuple[str, ...]


def _frame_text(f: Frame) -> str:
    fn = normalize_function(f.function) if f.function else "??"
    return f"{fn} [{f.module}]" if f.module else fn


def walk_frames(rip: Frame | None, frames: Sequence[Frame],
                max_frames: int = MAX_FRAMES) -> tuple[FrameDecision, ...]:
    """The decision on every frame (the RIP first, always reliable): crash path and
    unreliable frames skipped, prefix frames kept without counting, up to ``max_frames``
    counted frames."""
    skip = load_rules("skip_frames.txt")
    prefix = load_rules("prefix_frames.txt")
    out: list[FrameDecision] = []
    last: str | None = None
    counted = 0
    for i, f in enumerate(([rip] if rip is not None else []) + list(frames)):
        raw = (f.function or "??") + (f" [{f.module}]" if f.module else "")
        steps = normalization_steps(f.function) if f.function else ()
        name = normalize_function(f.function) if f.function else None
        text = _frame_text(f)
        rule = None
        if counted >= max_frames:
            verdict = "past budget"
        elif not f.reliable and not (i == 0 and rip is not None):
            verdict = "unreliable"
        elif name is not None and (rule := _rule(skip, name)) is not None:
            verdict = "skipped"
        elif text == last:
            verdict = "repeated"  # recursion and repeated unresolved addresses add nothing
        else:
            last = text
            rule = _rule(prefix, name) if name is not None else None
            verdict = "prefix" if rule is not None else "kept"
            counted += rule is None
        out.append(FrameDecision(raw, text, verdict, rule, steps))
    return tuple(out)


def select_frames(rip: Frame | None, frames: Sequence[Frame],
                  max_frames: int = MAX_FRAMES) -> tuple[str, ...]:
    """The normalized frames of a signature (see :func:`walk_frames`)."""
    return tuple(d.text for d in walk_frames(rip, frames, max_frames)
                 if d.verdict in ("kept", "prefix"))


def compute_signature(inp: SignatureInput) -> Signature:
    """The signature of one crash."""
    frames = select_frames(inp.rip, inp.frames)
    if not frames:
        frames = ("??",)
    findings = tuple(sorted({f"{f.kind}({f.module})" if f.module else f.kind
                             for f in inp.findings}))
    taint = "".join(sorted(set(inp.taint_letters) - {"G", " "}))
    head = inp.panic_class + (": " + ", ".join(findings) if findings else "")
    text = " | ".join((head, *frames))
    if taint:
        text += f" [{taint}]"
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    key = "\x1f".join((inp.panic_class, ",".join(findings), "|".join(frames), taint))
    return Signature(text=text, id=hashlib.sha256(key.encode()).hexdigest()[:16],
                     panic_class=inp.panic_class, frames=frames, taint=taint,
                     findings=findings)
