"""ELF notes of a crash dump: ``CORE``/NT_PRSTATUS per CPU and ``VMCOREINFO``.

Both ELF vmcores (PT_NOTE) and kdump-compressed dumps (the sub-header's note blob) carry the
same note stream. x86_64 ``elf_prstatus`` layout: ``pr_pid`` u32 at byte 32, ``pr_reg`` (27
u64 in ``user_regs_struct`` order) at byte 112.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmcore.errors import CorruptDump

__all__ = ["NT_PRSTATUS", "Note", "PrStatus", "parse_notes", "parse_prstatus"]

NT_PRSTATUS = 1
# More notes than this in one blob is a corrupt header (8192 CPUs x a few notes each).
MAX_NOTES = 65536
REG_NAMES = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)
_PR_PID = 32
_PR_REG = 112


class Note(NamedTuple):
    """One ELF note: ``name`` (without NUL), ``type``, ``desc`` bytes, ``offset`` of its header
    within the blob's source (file offset)."""

    name: str
    type: int
    desc: bytes
    offset: int


class PrStatus(NamedTuple):
    """A CPU's registers at the crash. ``number`` is the note's order (the kdump CPU index),
    ``pid`` the task running there (0 for idle), ``regs`` register name -> value (u64)."""

    number: int
    pid: int
    regs: dict[str, int]

    @property
    def rip(self) -> int:
        """Instruction pointer (virtual address; arm64: ``pc``)."""
        return self.regs["rip"] if "rip" in self.regs else self.regs["pc"]

    @property
    def sp(self) -> int:
        """Stack pointer (x86_64 ``rsp``, arm64 ``sp``)."""
        return self.regs["rsp"] if "rsp" in self.regs else self.regs["sp"]


def parse_notes(blob: bytes, base_offset: int = 0) -> list[Note]:
    """Split a note stream. Trailing zero padding ends it; a note running past the blob is
    :class:`CorruptDump` naming its file offset (``base_offset`` + position)."""
    notes: list[Note] = []
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        name_end = pos + 12 + namesz
        desc_start = pos + 12 + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > len(blob):
            raise CorruptDump(
                f"note of name size {namesz} and desc size {descsz} runs past the note "
                f"segment ({len(blob)} bytes)", offset=base_offset + pos)
        name = blob[pos + 12 : name_end].rstrip(b"\0").decode("ascii", "replace")
        notes.append(Note(name, ntype, blob[desc_start:desc_end], base_offset + pos))
        if len(notes) > MAX_NOTES:
            raise CorruptDump(f"more than {MAX_NOTES} notes", offset=base_offset + pos)
        pos = desc_start + ((descsz + 3) & ~3)
    return notes


def parse_prstatus(notes: list[Note], arch: str = "x86_64") -> list[PrStatus]:
    """The NT_PRSTATUS notes in order (``arch`` ``x86_64`` or ``arm64``: the register layout);
    short ones raise :class:`CorruptDump`."""
    if arch == "arm64":
        from vmcore.arm64 import parse_prstatus_arm64  # arm64 imports this module

        return [PrStatus(i, pid, regs)
                for i, (pid, regs) in enumerate(parse_prstatus_arm64(notes))]
    out: list[PrStatus] = []
    for n in notes:
        if n.name != "CORE" or n.type != NT_PRSTATUS:
            continue
        need = _PR_REG + 8 * len(REG_NAMES)
        if len(n.desc) < need:
            raise CorruptDump(f"NT_PRSTATUS of {len(n.desc)} bytes, x86_64 needs {need}",
                              offset=n.offset)
        (pid,) = struct.unpack_from("<I", n.desc, _PR_PID)
        values = struct.unpack_from(f"<{len(REG_NAMES)}Q", n.desc, _PR_REG)
        out.append(PrStatus(len(out), pid, dict(zip(REG_NAMES, values, strict=True))))
    return out
