"""ELF vmcores: ``/proc/vmcore`` copies, makedumpfile's ELF output, QEMU's ``dump-guest-memory``.

Physical memory comes from PT_LOAD segments by ``p_paddr``; bytes past ``p_filesz`` up to
``p_memsz`` read as zeros (makedumpfile's filtered ELF). Notes come from every PT_NOTE.
QEMU writes a section header before the program headers and a bogus ``e_ehsize``: neither is
used here. ``e_phnum == 0xffff`` (PN_XNUM) takes the count from section 0's ``sh_info``.
"""

from __future__ import annotations

import bisect
import struct
from typing import NamedTuple

from vmcore.errors import CorruptDump, PageExcluded, UnsupportedDump
from vmcore.source import ByteSource, read_exact

__all__ = ["ElfVmcore", "Load", "is_elf"]

PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
EM_X86_64 = 62
EM_AARCH64 = 183
_MACHINES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}
MAX_PHNUM = 1 << 20
MAX_NOTE_BYTES = 64 << 20


def is_elf(head: bytes) -> bool:
    """True when ``head`` starts with the ELF magic."""
    return head[:4] == b"\x7fELF"


class Load(NamedTuple):
    """One PT_LOAD: physical start ``paddr``, ``memsz``/``filesz`` in bytes, file ``offset``,
    virtual start ``vaddr``."""

    paddr: int
    memsz: int
    filesz: int
    offset: int
    vaddr: int


class ElfVmcore:
    """Physical memory and notes of an ELF64 little-endian x86_64 or aarch64 core file;
    ``machine`` is ``x86_64`` or ``aarch64``."""

    format = "elf"
    compression = "none"

    def __init__(self, src: ByteSource, page_size: int = 4096):
        self.src = src
        self.page_size = page_size
        eh = read_exact(src, 0, 64, "ELF header")
        if not is_elf(eh):
            raise CorruptDump("no ELF magic", offset=0)
        if eh[4] != 2 or eh[5] != 1:
            raise UnsupportedDump(f"ELF class {eh[4]} data {eh[5]} (only ELF64 LSB)", offset=4)
        (e_machine,) = struct.unpack_from("<H", eh, 18)
        if e_machine not in _MACHINES:
            raise UnsupportedDump(f"ELF machine {e_machine} (only x86_64 and aarch64)",
                                  offset=18)
        self.machine = _MACHINES[e_machine]  # as uname -m
        e_phoff, e_shoff = struct.unpack_from("<QQ", eh, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", eh, 54)
        phnum = e_phnum
        if e_phnum == PN_XNUM:
            sh0 = read_exact(src, e_shoff, 64, "section header 0 (PN_XNUM)")
            phnum = struct.unpack_from("<I", sh0, 44)[0]
        if e_phentsize < 56 or phnum > MAX_PHNUM or phnum == 0:
            raise CorruptDump(f"program headers: {phnum} of {e_phentsize} bytes", offset=54)
        ph = read_exact(src, e_phoff, phnum * e_phentsize, "program headers")
        loads: list[Load] = []
        self.note_ranges: list[tuple[int, int]] = []
        for i in range(phnum):
            at = i * e_phentsize
            p_type, _flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from(
                "<IIQQQQQ", ph, at)
            if p_type == PT_NOTE:
                if p_filesz > MAX_NOTE_BYTES or p_offset + p_filesz > src.size:
                    raise CorruptDump(f"PT_NOTE {p_offset:#x}+{p_filesz:#x} past end of dump",
                                      offset=e_phoff + at)
                self.note_ranges.append((p_offset, p_filesz))
            elif p_type == PT_LOAD:
                if p_filesz > p_memsz:
                    raise CorruptDump(f"PT_LOAD filesz {p_filesz:#x} > memsz {p_memsz:#x}",
                                      offset=e_phoff + at)
                if p_memsz:  # makedumpfile -E on arm64 writes an empty one (p_offset 0)
                    loads.append(Load(p_paddr, p_memsz, p_filesz, p_offset, p_vaddr))
        loads.sort(key=lambda ld: ld.paddr)
        self.loads = tuple(loads)
        self._starts = [ld.paddr for ld in loads]

    def notes_blobs(self) -> list[tuple[bytes, int]]:
        """Each PT_NOTE's bytes with its file offset."""
        return [(read_exact(self.src, off, size, "PT_NOTE"), off)
                for off, size in self.note_ranges]

    def _find(self, paddr: int) -> Load | None:
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0 and paddr < self.loads[i].paddr + self.loads[i].memsz:
            return self.loads[i]
        return None

    def read_phys(self, paddr: int, length: int) -> bytes:
        """``length`` bytes of physical memory at ``paddr``; zeros past ``p_filesz``."""
        out = []
        while length > 0:
            ld = self._find(paddr)
            if ld is None:
                raise PageExcluded("physical address not in any PT_LOAD", offset=paddr,
                                   space="phys")
            rel = paddr - ld.paddr
            n = min(length, ld.memsz - rel)
            if rel < ld.filesz:
                k = min(n, ld.filesz - rel)
                out.append(read_exact(self.src, ld.offset + rel, k, "PT_LOAD data"))
                if k < n:
                    out.append(bytes(n - k))
            else:
                out.append(bytes(n))
            paddr += n
            length -= n
        return b"".join(out)
