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
from importlib import resources

__all__ = [
    "MAX_FRAMES",
    "Finding",
    "Frame",
    "Signature",
    "SignatureInput",
    "compute_signature",
    "load_patterns",
    "normalize_function",
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


@functools.cache
def load_patterns(name: str) -> tuple[re.Pattern[str], ...]:
    """The compiled regexes of data file ``name`` (``skip_frames.txt``, ``prefix_frames.txt``)."""
    text = resources.files(__package__).joinpath("data", name).read_text()
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(re.compile(line))
    return tuple(out)


def _matches(patterns: Iterable[re.Pattern[str]], name: str) -> bool:
    return any(p.fullmatch(name) for p in patterns)


def _frame_text(f: Frame) -> str:
    fn = normalize_function(f.function) if f.function else "??"
    return f"{fn} [{f.module}]" if f.module else fn


def select_frames(rip: Frame | None, frames: Sequence[Frame],
                  max_frames: int = MAX_FRAMES) -> tuple[str, ...]:
    """The normalized frames of a signature: RIP first, crash path and unreliable frames
    skipped, prefix frames kept without counting."""
    skip = load_patterns("skip_frames.txt")
    prefix = load_patterns("prefix_frames.txt")
    out: list[str] = []
    counted = 0
    candidates = ([rip] if rip is not None else []) + [f for f in frames if f.reliable]
    for f in candidates:
        name = normalize_function(f.function) if f.function else None
        if name is not None and _matches(skip, name):
            continue
        text = _frame_text(f)
        if out and out[-1] == text:
            continue  # recursion and repeated unresolved addresses add nothing
        out.append(text)
        if name is None or not _matches(prefix, name):
            counted += 1
        if counted >= max_frames:
            break
    return tuple(out)


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
