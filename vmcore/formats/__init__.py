"""Dump formats, detected by content: kdump-compressed, flattened, ELF.

:func:`open_dump` returns a :class:`Dump`: physical memory (``read_phys``), the ELF notes and
the VMCOREINFO blob, whatever the container.
"""

from __future__ import annotations

from typing import NamedTuple

from vmcore.errors import CorruptDump, UnsupportedDump
from vmcore.formats.diskdump import SIGNATURES, KdumpFile, KdumpHeader
from vmcore.formats.elf import ElfVmcore, is_elf
from vmcore.formats.flattened import FlatIndex, FlattenedSource, build_index, is_flattened
from vmcore.notes import Note, parse_notes
from vmcore.source import ByteSource

__all__ = ["Dump", "detect", "open_dump"]

# Refuse a single memory read larger than this: no structure the decoder reads is bigger, so a
# larger request comes from a lying field.
MAX_READ = 64 << 20


def detect(src: ByteSource) -> str:
    """``kdump``, ``kdump-flattened`` or ``elf`` from the first bytes; :class:`UnsupportedDump`
    otherwise."""
    head = src.read(0, 32)
    if head[:8] in SIGNATURES:
        return "kdump"
    if is_flattened(head):
        return "kdump-flattened"
    if is_elf(head):
        return "elf"
    # The reason travels to logs, the dead-letter topic and the store: it never quotes the
    # file's bytes (a hard link to /etc/shadow would have its first line echoed).
    raise UnsupportedDump(f"unknown dump format (no known signature in the first "
                          f"{len(head[:16])} bytes)", offset=0)


class Dump(NamedTuple):
    """An opened dump. ``format`` is the container (``kdump``, ``kdump-flattened``, ``elf``),
    ``compression`` the page compression, ``notes`` every ELF note, ``vmcoreinfo_blob`` the raw
    VMCOREINFO (None when absent), ``kdump_header`` for kdump containers, ``flat_index`` for
    flattened ones, ``page_size`` in bytes."""

    format: str
    compression: str
    reader: KdumpFile | ElfVmcore
    notes: list[Note]
    vmcoreinfo_blob: bytes | None
    kdump_header: KdumpHeader | None
    flat_index: FlatIndex | None
    page_size: int
    source: ByteSource

    def read_phys(self, paddr: int, length: int) -> bytes:
        """Physical memory; raises ``PageExcluded`` for pages not in the dump."""
        if length < 0 or length > MAX_READ:
            raise CorruptDump(f"memory read of {length} bytes refused", offset=paddr,
                              space="phys")
        return self.reader.read_phys(paddr, length)


def open_dump(src: ByteSource, flat_index: FlatIndex | None = None) -> Dump:
    """Open ``src`` (format detected by content). For flattened dumps a stored ``flat_index``
    avoids the indexing pass."""
    fmt = detect(src)
    index = None
    inner = src
    if fmt == "kdump-flattened":
        index = flat_index or build_index(src)
        inner = FlattenedSource(src, index)
        if inner.read(0, 8) not in SIGNATURES:
            raise UnsupportedDump("flattened dump does not contain a kdump-compressed dump",
                                  offset=0)
    notes: list[Note] = []
    vmci: bytes | None = None
    if fmt == "elf":
        elf = ElfVmcore(src)
        for blob, off in elf.notes_blobs():
            notes.extend(parse_notes(blob, off))
        for n in notes:
            if n.name == "VMCOREINFO":
                vmci = n.desc
        return Dump(fmt, "none", elf, notes, vmci, None, None, elf.page_size, src)
    kd = KdumpFile(inner)
    nb = kd.notes_blob()
    if nb is not None:
        notes = parse_notes(*nb)
    vmci = kd.vmcoreinfo_blob()
    if vmci is None:
        for n in notes:
            if n.name == "VMCOREINFO":
                vmci = n.desc
    return Dump(fmt, kd.compression, kd, notes, vmci, kd.header, index, kd.page_size, inner)
