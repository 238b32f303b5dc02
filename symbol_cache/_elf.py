"""Bounded reads of a vmlinux through pyelftools: sections, build-id note, raw symbol table."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from symbol_cache.errors import MalformedInput

__all__ = ["ElfImage", "RawSymbol", "read_build_id"]

# A section we load into memory whole is at most this many bytes (symtab, BTF, ORC, lines);
# a bigger one means a corrupt header, not a kernel.
MAX_SECTION = 256 * 1024 * 1024
_NT_GNU_BUILD_ID = 3
_MAX_NOTES = 4096

_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size

RawSymbol = tuple[int, int, int, int, int, int]  # name offset, info, other, shndx, value, size


class ElfImage:
    """An opened vmlinux. Use as a context manager; ``path`` is for messages."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: BinaryIO = path.open("rb")
        try:
            self.elf = ELFFile(self._fh)
        except ELFError as exc:
            self._fh.close()
            raise MalformedInput(f"{path}: not an ELF file: {exc}", path=str(path)) from None
        if self.elf.elfclass != 64 or not self.elf.little_endian:
            self._fh.close()
            raise MalformedInput(f"{path}: only little-endian ELF64 kernels are supported",
                                 path=str(path))

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def section_bytes(self, name: str) -> bytes | None:
        """Contents of section ``name`` (None when absent or NOBITS), bounded by MAX_SECTION."""
        sec = self.elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        size = sec["sh_size"]
        if size > MAX_SECTION:
            raise MalformedInput(f"{self.path}: section {name} of {size} bytes is too large",
                                 path=str(self.path))
        self._fh.seek(sec["sh_offset"])
        data = self._fh.read(size)
        if len(data) != size:
            raise MalformedInput(f"{self.path}: section {name} is truncated",
                                 path=str(self.path), offset=sec["sh_offset"])
        return data

    def read_in_section(self, name: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` inside section ``name`` (b"" when absent)."""
        sec = self.elf.get_section_by_name(name)
        if sec is None or offset >= sec["sh_size"] or size > MAX_SECTION:
            return b""
        self._fh.seek(sec["sh_offset"] + offset)
        return self._fh.read(min(size, sec["sh_size"] - offset))

    def section_addr(self, name: str) -> int | None:
        """Link-time virtual address of section ``name``, or None."""
        sec = self.elf.get_section_by_name(name)
        return None if sec is None else int(sec["sh_addr"])

    def section_flags(self) -> list[tuple[int, int, str, int, int]]:
        """Per section index: (sh_flags, sh_type as int-ish code, name, addr, size)."""
        out = []
        for sec in self.elf.iter_sections():
            nobits = 1 if sec["sh_type"] == "SHT_NOBITS" else 0
            out.append((int(sec["sh_flags"]), nobits, sec.name, int(sec["sh_addr"]),
                        int(sec["sh_size"])))
        return out

    def read_at_address(self, addr: int, size: int) -> bytes | None:
        """``size`` bytes at link address ``addr`` from the PROGBITS section holding it."""
        if size > MAX_SECTION:
            raise MalformedInput(f"{self.path}: read of {size} bytes is too large")
        for sec in self.elf.iter_sections():
            start = int(sec["sh_addr"])
            if (sec["sh_type"] == "SHT_PROGBITS" and start and start <= addr
                    and addr + size <= start + int(sec["sh_size"])):
                self._fh.seek(int(sec["sh_offset"]) + addr - start)
                return self._fh.read(size)
        return None

    def build_id(self) -> str | None:
        """Hex of the NT_GNU_BUILD_ID note, or None when the ELF has none."""
        for sec in self.elf.iter_sections():
            if sec["sh_type"] != "SHT_NOTE":
                continue
            data = self.section_bytes(sec.name)
            if data is not None:
                found = _gnu_build_id(data)
                if found:
                    return found
        return None

    def symbols(self) -> Iterator[RawSymbol]:
        """Raw ``.symtab`` entries (bounded by the section size); index 0 is skipped."""
        data = self.section_bytes(".symtab")
        if data is None:
            raise MalformedInput(f"{self.path}: no .symtab: a stripped file, not the debug "
                                 "vmlinux (-dbg package, debuginfod 'debuginfo')",
                                 path=str(self.path))
        if len(data) % _SYM.size:
            raise MalformedInput(f"{self.path}: .symtab size {len(data)} is not a multiple of "
                                 f"{_SYM.size}", path=str(self.path))
        it = _SYM.iter_unpack(data)
        next(it, None)
        yield from it

    def strtab(self) -> bytes:
        """The ``.strtab`` section."""
        data = self.section_bytes(".strtab")
        if data is None:
            raise MalformedInput(f"{self.path}: no .strtab", path=str(self.path))
        return data


def _gnu_build_id(notes: bytes) -> str | None:
    """The GNU build-id in a note section's bytes; bounded walk, None when absent."""
    pos = 0
    for _ in range(_MAX_NOTES):
        if pos + 12 > len(notes):
            return None
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_start = pos + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        end = desc_start + ((descsz + 3) & ~3)
        if end > len(notes):
            return None
        name = notes[name_start : name_start + namesz].rstrip(b"\0")
        if ntype == _NT_GNU_BUILD_ID and name == b"GNU":
            return notes[desc_start : desc_start + descsz].hex()
        pos = end
    return None


def read_build_id(path: Path) -> str | None:
    """The GNU build-id of the ELF file at ``path`` (None when it has none)."""
    with ElfImage(path) as img:
        return img.build_id()
