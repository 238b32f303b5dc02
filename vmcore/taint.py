"""Kernel taint flags: letters, bits and meanings (kernel ``kernel/panic.c`` ``taint_flags``).

The kernel prints one column per flag, a letter when set and a space when clear, except bit 0
which prints ``P`` (proprietary module loaded) or ``G`` (all modules GPL). Newer kernels also
print ``[O]=OOT_MODULE, …``; both forms decode to the same flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TAINT_FLAGS", "Taint", "TaintFlag", "decode_taint"]


@dataclass(frozen=True)
class TaintFlag:
    """One taint flag: kernel ``bit`` number, ``letter``, kernel ``name``, ``meaning``."""

    bit: int
    letter: str
    name: str
    meaning: str


TAINT_FLAGS: tuple[TaintFlag, ...] = (
    TaintFlag(0, "P", "PROPRIETARY_MODULE", "proprietary module loaded"),
    TaintFlag(1, "F", "FORCED_MODULE", "module force-loaded"),
    TaintFlag(2, "S", "CPU_OUT_OF_SPEC", "CPU out of specification / SMP unsafe"),
    TaintFlag(3, "R", "FORCED_RMMOD", "module force-unloaded"),
    TaintFlag(4, "M", "MACHINE_CHECK", "machine check exception occurred"),
    TaintFlag(5, "B", "BAD_PAGE", "bad page referenced or unexpected page flags"),
    TaintFlag(6, "U", "USER", "tainted by a userspace request"),
    TaintFlag(7, "D", "DIE", "kernel died recently (OOPS or BUG)"),
    TaintFlag(8, "A", "OVERRIDDEN_ACPI_TABLE", "ACPI table overridden by user"),
    TaintFlag(9, "W", "WARN", "kernel issued a warning"),
    TaintFlag(10, "C", "CRAP", "staging driver loaded"),
    TaintFlag(11, "I", "FIRMWARE_WORKAROUND", "workaround for a platform firmware bug applied"),
    TaintFlag(12, "O", "OOT_MODULE", "out-of-tree module loaded"),
    TaintFlag(13, "E", "UNSIGNED_MODULE", "unsigned module loaded"),
    TaintFlag(14, "L", "SOFTLOCKUP", "soft lockup occurred"),
    TaintFlag(15, "K", "LIVEPATCH", "kernel live patched"),
    TaintFlag(16, "X", "AUX", "auxiliary taint (distribution-defined)"),
    TaintFlag(17, "T", "RANDSTRUCT", "built with the struct randomization plugin"),
    TaintFlag(18, "N", "TEST", "in-kernel test run"),
    TaintFlag(19, "J", "FWCTL", "userspace used a mutating fwctl command"),
)
_BY_LETTER = {f.letter: f for f in TAINT_FLAGS}
_BRACKETED = re.compile(r"\[([A-Z])\]=")


@dataclass(frozen=True)
class Taint:
    """A decoded taint string. ``text`` as printed; ``letters`` the set flags' letters in bit
    order (``G`` is not a flag, it means bit 0 clear); ``flags`` the set flags; ``mask`` the
    taint bits; ``unknown`` letters this table does not know."""

    text: str
    letters: str
    flags: tuple[TaintFlag, ...]
    mask: int
    unknown: str


def decode_taint(text: str) -> Taint:
    """Decode ``Not tainted``, a column string like ``G           OE     `` or a list like
    ``[O]=OOT_MODULE, [E]=UNSIGNED_MODULE``."""
    t = text.strip()
    if t.lower() in ("", "not tainted"):
        return Taint(text, "", (), 0, "")
    letters = _BRACKETED.findall(t) if "]=" in t else [c for c in t if c.isalpha()]
    flags: list[TaintFlag] = []
    unknown = ""
    for c in letters:
        if c == "G":
            continue
        f = _BY_LETTER.get(c)
        if f is None:
            unknown += c
        elif f not in flags:
            flags.append(f)
    flags.sort(key=lambda f: f.bit)
    mask = 0
    for f in flags:
        mask |= 1 << f.bit
    return Taint(text, "".join(f.letter for f in flags), tuple(flags), mask, unknown)
