"""Crash titles: one line a kernel engineer recognises (``kernel BUG at f.c:12 in foo [mod]``).

The kind of crash comes from an ordered table kept as data (``data/crash_kinds.txt``: kind,
pattern, template); the first kind whose pattern matches one of the report's facts
(``class: page_fault``, ``headline: BUG: kernel NULL pointer dereference, …``) names the
crash, as syzkaller's report titles do. The function in the title is the first frame the
signature keeps that is not a generic helper of the prefix list (the caller of ``memcpy`` or
``refcount_warn_saturate`` is what identifies the bug), with its module in brackets.

Alternative titles drop what differs between kernel builds of the same bug (the file:line of a
BUG or WARNING) and serve clustering as an extra join rule: the same kind of crash in the same
function is one bug, whatever path called it (syzbot files bugs by title).

Pure: no I/O beyond reading the packaged data file once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from signature import load_patterns

# The data files beside the code (not importlib.resources: it pulls tempfile, zipfile and
# urllib into every `crashfleet analyze`).
_DATA = Path(__file__).resolve().parent / "data"

__all__ = ["KINDS_FILE", "MAX_TITLE", "CrashKind", "Title", "TitleInput", "compute_title",
           "load_kinds", "title_function"]

KINDS_FILE = "crash_kinds.txt"
MAX_TITLE = 120  # characters: one line in an alert, a table row, a bug tracker's summary

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_OPTIONAL = re.compile(r"<([^<>]*)>")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MODULE = re.compile(r" \[[^\]]+\]$")


@dataclass(frozen=True)
class CrashKind:
    """One line of ``crash_kinds.txt``: ``line`` its 1-based number in the file."""

    kind: str
    pattern: re.Pattern[str]
    template: str
    line: int


@dataclass(frozen=True)
class TitleInput:
    """What a title is made of: ``facts`` as ``(field, value)`` pairs in report order, and the
    signature's kept ``frames`` (``name [module]`` or ``??``), innermost first."""

    facts: tuple[tuple[str, str], ...]
    frames: tuple[str, ...] = ()


@dataclass(frozen=True)
class Title:
    """``text`` the title; ``kind`` and ``line`` the data-file row that made it; ``fact`` the
    fact line its pattern matched; ``function`` the frame named (None: none used);
    ``alternatives`` the titles clustering matches on (the title without what differs between
    kernel builds; empty when the title names no function it should)."""

    text: str
    kind: str
    line: int
    fact: str
    function: str | None
    alternatives: tuple[str, ...]


@functools.cache
def load_kinds(name: str = KINDS_FILE) -> tuple[CrashKind, ...]:
    """The compiled rows of the crash-kinds data file, in order."""
    text = (_DATA / name).read_text(encoding="utf-8")
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(" :: ")
        if len(parts) != 3:
            raise ValueError(f"{name}:{n}: expected 'kind :: pattern :: template'")
        kind, pattern, template = (p.strip() for p in parts)
        out.append(CrashKind(kind, re.compile(pattern), template, n))
    return tuple(out)


def title_function(frames: Sequence[str]) -> str | None:
    """The frame a title names: the first kept frame that is not a prefix-list helper, else
    the first resolved one; None when every frame is a bare address."""
    prefix = load_patterns("prefix_frames.txt")
    named = [f for f in frames if f != "??" and not f.startswith("?? ")]
    for f in named:
        bare = _MODULE.sub("", f)
        if not any(p.fullmatch(bare) for p in prefix):
            return f
    return named[0] if named else None


def _clean(text: str) -> str:
    """One printable line: control characters become spaces, runs of blanks one space."""
    return " ".join(_UNPRINTABLE.sub(" ", text).split())


def _render(template: str, values: Mapping[str, str | None]) -> str:
    def optional(m: re.Match[str]) -> str:
        names = _PLACEHOLDER.findall(m[1])
        return m[1] if all(values.get(n) for n in names) else "\x00"

    text = _OPTIONAL.sub(optional, template).replace("\x00", "")
    text = _PLACEHOLDER.sub(lambda m: _clean(values.get(m[1]) or "?"), text)
    return _shorten(text)


def _shorten(text: str) -> str:
    text = _clean(text)
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"


def _match(kinds: Sequence[CrashKind], facts: Sequence[tuple[str, str]]
           ) -> tuple[CrashKind, str, dict[str, str]] | None:
    lines = [f"{k}: {_clean(v)}" for k, v in facts]
    for kind in kinds:
        for line in lines:
            m = kind.pattern.search(line)
            if m:
                return kind, line, {k: v for k, v in m.groupdict().items() if v}
    return None


def compute_title(inp: TitleInput) -> Title:
    """The title of one crash (``unknown crash`` when no row matches, which the catch-all
    last row prevents for any report with a class)."""
    found = _match(load_kinds(), inp.facts)
    if found is None:
        return Title("unknown crash", "unknown", 0, "", None, ())
    kind, fact, groups = found
    func = title_function(inp.frames)
    values: dict[str, str | None] = {}
    for k, v in inp.facts:
        values.setdefault(k, v)
    values["message"] = values.get("panic")
    values.update(groups)
    values["func"] = func
    text = _render(kind.template, values)
    uses_func = "{func}" in kind.template
    alternatives: tuple[str, ...] = ()
    if kind.kind != "corrupted" and (func is not None or not uses_func):
        # What differs between builds of one bug: an in-tree file:line moves. The module
        # stays: static functions of different drivers share names (probe, init_one).
        alternatives = (_render(kind.template, dict(values, location=None)),)
    return Title(text, kind.kind, kind.line, fact, func if uses_func else None, alternatives)
