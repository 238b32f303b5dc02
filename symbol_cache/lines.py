"""file:line for addresses, from the vmlinux's DWARF line programs, decoded on demand.

Building never runs the line programs (that is what makes whole-DWARF tools slow): it reads
``.debug_aranges`` (address ranges → compile unit), takes each unit's ``DW_AT_stmt_list`` from
its first DIE only, and stores the ranges with the ``.debug_line`` and ``.debug_line_str``
sections compressed. A lookup decodes the one line program covering the address (a few KiB)
and caches it. Formats: DWARF 2 to 5 (``include/dwarf2.h``; DWARF 5 spec §6.2).
"""

from __future__ import annotations

import bisect
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from symbol_cache._lazy import Lazy
from symbol_cache.errors import MalformedInput

__all__ = ["LineInfo", "LineTable", "line_index"]

_MAX_RANGES = 4_000_000
_MAX_ROWS = 2_000_000
_MAX_PROGRAMS_CACHED = 256
_MAX_ENTRIES = 100_000
_DW_AT_STMT_LIST = 0x10
_MAX_LINE_DATA = 256 * 1024 * 1024


@dataclass(frozen=True)
class LineInfo:
    """Source position of an address: ``line`` 1-based, 0 when the compiler gave none."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class _Reader:
    """Bounded little-endian cursor over bytes; every overrun is a MalformedInput."""

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None,
                 what: str = "DWARF"):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else min(end, len(data))
        self.what = what

    def _need(self, n: int) -> None:
        if self.pos + n > self.end:
            raise MalformedInput(f"{self.what} truncated", offset=self.pos)

    def u(self, n: int) -> int:
        self._need(n)
        v = int.from_bytes(self.data[self.pos : self.pos + n], "little")
        self.pos += n
        return v

    def s8(self) -> int:
        v = self.u(1)
        return v - 256 if v > 127 else v

    def _leb(self) -> tuple[int, int, int]:
        """A LEB128 number's bits, their count and its last byte."""
        result = shift = 0
        while True:
            self._need(1)
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result, shift, b
            if shift > 63:
                raise MalformedInput(f"{self.what}: LEB128 too long", offset=self.pos)

    def uleb(self) -> int:
        return self._leb()[0]

    def sleb(self) -> int:
        result, shift, last = self._leb()
        return result - (1 << shift) if last & 0x40 else result

    def cstr(self) -> bytes:
        end = bytes(self.data[self.pos : min(self.end, self.pos + 4096)]).find(b"\0")
        if end < 0:
            raise MalformedInput(f"{self.what}: unterminated string", offset=self.pos)
        s = bytes(self.data[self.pos : self.pos + end])
        self.pos += end + 1
        return s


# Fixed sizes of DWARF forms (32-bit DWARF, 8-byte addresses); None: variable length.
_FORM_SIZE: dict[int, int | None] = {
    0x01: 8, 0x05: 2, 0x06: 4, 0x07: 8, 0x0B: 1, 0x0C: 1, 0x0E: 4, 0x10: 4, 0x11: 1,
    0x12: 2, 0x13: 4, 0x14: 8, 0x17: 4, 0x19: 0, 0x1C: 4, 0x1D: 4, 0x1E: 16, 0x1F: 4,
    0x20: 8, 0x21: 0, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4, 0x29: 1, 0x2A: 2,
    0x2B: 3, 0x2C: 4,
}


def _skip_form(r: _Reader, form: int) -> None:
    size = _FORM_SIZE.get(form)
    if size is not None:
        r.pos += size
    elif form in (0x0D,):
        r.sleb()
    elif form in (0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23):
        r.uleb()
    elif form == 0x08:
        r.cstr()
    elif form in (0x09, 0x18):
        r.pos += r.uleb()
    elif form == 0x0A:
        r.pos += r.u(1)
    elif form == 0x03:
        r.pos += r.u(2)
    elif form == 0x04:
        r.pos += r.u(4)
    elif form == 0x16:
        _skip_form(r, r.uleb())
    else:
        raise MalformedInput(f"DWARF form {form:#x} not understood", offset=r.pos)


def _stmt_list(info_head: bytes, abbrev: bytes) -> int | None:
    """``DW_AT_stmt_list`` of the first DIE of the unit whose header starts ``info_head``."""
    r = _Reader(info_head, what=".debug_info")
    if r.u(4) >= 0xFFFFFFF0:
        return None  # 64-bit DWARF: not produced for kernels
    version = r.u(2)
    if version >= 5:
        _unit_type, _addr_size, abbrev_off = r.u(1), r.u(1), r.u(4)
    else:
        abbrev_off, _addr_size = r.u(4), r.u(1)
    code = r.uleb()
    a = _Reader(abbrev, abbrev_off, what=".debug_abbrev")
    for _ in range(_MAX_ENTRIES):
        acode = a.uleb()
        if acode == 0:
            return None
        a.uleb()  # tag
        a.u(1)  # children
        attrs = []
        while True:
            name, form = a.uleb(), a.uleb()
            if name == 0 and form == 0:
                break
            if form == 0x21:
                a.sleb()
            attrs.append((name, form))
        if acode != code:
            continue
        for name, form in attrs:
            if name == _DW_AT_STMT_LIST:
                return r.u(4) if form in (0x17, 0x06) else None
            _skip_form(r, form)
        return None
    return None


def line_index(aranges: bytes, read_info: Callable[[int], bytes],
               abbrev: bytes) -> list[tuple[int, int, int]]:
    """(start, length, .debug_line offset) per address range, sorted by start.
    ``read_info(offset)`` returns the first bytes of the unit at ``offset`` in .debug_info."""
    r = _Reader(aranges, what=".debug_aranges")
    stmt_of: dict[int, int | None] = {}
    out: list[tuple[int, int, int]] = []
    while r.pos < r.end:
        set_start = r.pos
        length = r.u(4)
        set_end = r.pos + length
        _version, cu_off, addr_size, _seg = r.u(2), r.u(4), r.u(1), r.u(1)
        if addr_size != 8:
            raise MalformedInput(".debug_aranges: only 8-byte addresses", offset=set_start)
        r.pos = set_start + ((r.pos - set_start + 15) // 16) * 16
        if cu_off not in stmt_of:
            stmt_of[cu_off] = _stmt_list(read_info(cu_off), abbrev)
        stmt = stmt_of[cu_off]
        while r.pos + 16 <= set_end:
            addr, size = r.u(8), r.u(8)
            if addr == 0 and size == 0:
                break
            if stmt is not None and size:
                out.append((addr, size, stmt))
                if len(out) > _MAX_RANGES:
                    raise MalformedInput(".debug_aranges has too many ranges")
        r.pos = set_end
    out.sort()
    return out


class _Program:
    """One decoded line program: sorted rows (address, file index, line) per sequence."""

    def __init__(self, line: bytes, offset: int, line_str: bytes):
        r = _Reader(line, offset, what=".debug_line")
        unit_length = r.u(4)
        if unit_length >= 0xFFFFFFF0:
            raise MalformedInput("64-bit DWARF line tables are not supported", offset=offset)
        end = r.pos + unit_length
        r.end = min(end, len(line))
        version = r.u(2)
        if version >= 5:
            r.u(1)  # address_size
            r.u(1)  # segment selector size
        header_length = r.u(4)
        program_start = r.pos + header_length
        min_inst = r.u(1)
        if version >= 4:
            r.u(1)  # maximum_operations_per_instruction (VLIW only)
        default_is_stmt = r.u(1)
        line_base = r.s8()
        line_range = r.u(1)
        opcode_base = r.u(1)
        if line_range == 0 or opcode_base == 0:
            raise MalformedInput(".debug_line header has line_range or opcode_base 0",
                                 offset=offset)
        std_lengths = [r.u(1) for _ in range(opcode_base - 1)]
        self.files: list[str] = []
        if version >= 5:
            dirs = self._entries_v5(r, line_str)
            files = self._entries_v5(r, line_str, dirs)
            self.files = files
        else:
            dirs = [""]
            while True:
                d = r.cstr()
                if not d:
                    break
                dirs.append(d.decode("utf-8", "replace"))
            self.files = ["?"]  # DWARF <= 4 file numbers start at 1
            while len(self.files) < _MAX_ENTRIES:
                name = r.cstr()
                if not name:
                    break
                di = r.uleb()
                r.uleb()
                r.uleb()
                self.files.append(_join(dirs[di] if di < len(dirs) else "",
                                        name.decode("utf-8", "replace")))
        r.pos = program_start
        self.addrs = array("Q")
        self.rows: list[tuple[int, int, bool]] = []  # (file, line, end_sequence)
        self._run(r, min_inst, default_is_stmt, line_base, line_range, opcode_base,
                  std_lengths)

    @staticmethod
    def _entries_v5(r: _Reader, line_str: bytes, dirs: list[str] | None = None) -> list[str]:
        fmt_count = r.u(1)
        fmt = [(r.uleb(), r.uleb()) for _ in range(fmt_count)]
        count = r.uleb()
        if count > _MAX_ENTRIES:
            raise MalformedInput(".debug_line: too many directory/file entries", offset=r.pos)
        out = []
        for _ in range(count):
            path, dir_index = "", 0
            for ctype, form in fmt:
                if ctype == 1:  # DW_LNCT_path
                    if form == 0x1F:
                        off = r.u(4)
                        end = line_str.find(b"\0", off)
                        path = line_str[off:end].decode("utf-8", "replace") if end >= 0 else "?"
                    elif form == 0x08:
                        path = r.cstr().decode("utf-8", "replace")
                    else:
                        _skip_form(r, form)
                        path = "?"
                elif ctype == 2:  # DW_LNCT_directory_index
                    dir_index = r.uleb() if form == 0x0F else r.u({0x0B: 1, 0x05: 2}.get(form, 4))
                else:
                    _skip_form(r, form)
            if dirs is not None:
                directory = dirs[dir_index] if dir_index < len(dirs) else ""
                if dir_index and dirs and not directory.startswith("/"):
                    directory = _join(dirs[0], directory)  # relative to the unit's directory
                path = _join(directory, path)
            out.append(path)
        return out

    def _emit(self, address: int, file: int, line: int, end: bool) -> None:
        if len(self.rows) >= _MAX_ROWS:
            raise MalformedInput(".debug_line program has too many rows")
        self.addrs.append(address)
        self.rows.append((file, line, end))

    def _run(self, r: _Reader, min_inst: int, default_is_stmt: int, line_base: int,
             line_range: int, opcode_base: int, std_lengths: list[int]) -> None:
        address, file, line = 0, 1, 1
        while r.pos < r.end:
            op = r.u(1)
            if op >= opcode_base:
                adj = op - opcode_base
                address += (adj // line_range) * min_inst
                line += line_base + adj % line_range
                self._emit(address, file, line, False)
            elif op == 0:
                length = r.uleb()
                sub_end = r.pos + length
                sub = r.u(1) if length else 0
                if sub == 1:  # DW_LNE_end_sequence
                    self._emit(address, file, line, True)
                    address, file, line = 0, 1, 1
                elif sub == 2:  # DW_LNE_set_address
                    address = r.u(8)
                r.pos = sub_end
            elif op == 1:  # DW_LNS_copy
                self._emit(address, file, line, False)
            elif op == 2:
                address += r.uleb() * min_inst
            elif op == 3:
                line += r.sleb()
            elif op == 4:
                file = r.uleb()
            elif op == 5:
                r.uleb()
            elif op == 8:  # DW_LNS_const_add_pc
                address += ((255 - opcode_base) // line_range) * min_inst
            elif op == 9:
                address += r.u(2)
            elif op in (6, 7, 10, 11):
                pass
            else:  # DW_LNS_set_isa and unknown standard opcodes: skip their operands
                for _ in range(std_lengths[op - 1]):
                    r.uleb()

    def lookup(self, address: int) -> LineInfo | None:
        # Rows sorted per sequence; sequences may interleave, so search them all in order.
        best: tuple[int, int] | None = None  # (row address, row index)
        start = 0
        n = len(self.rows)
        while start < n:
            end = start
            while end < n and not self.rows[end][2]:
                end += 1
            # sequence is rows[start..end], rows[end] is its end_sequence marker
            if end < n and self.addrs[start] <= address < self.addrs[end]:
                i = bisect.bisect_right(self.addrs, address, start, end) - 1
                if best is None or self.addrs[i] > best[0]:
                    best = (self.addrs[i], i)
            start = end + 1
        if best is None:
            return None
        file, line, _end = self.rows[best[1]]
        name = self.files[file] if 0 <= file < len(self.files) else "?"
        return LineInfo(name, line)


def _join(directory: str, name: str) -> str:
    if not directory or name.startswith("/"):
        return name
    return f"{directory.rstrip('/')}/{name}"


class LineTable:
    """Address ranges → line programs, with the compressed DWARF line sections."""

    def __init__(self, starts: array, lengths: array, offsets: array, line_z: bytes,
                 line_str_z: bytes):
        if not len(starts) == len(lengths) == len(offsets):
            raise MalformedInput("line index arrays disagree")
        self.starts, self.lengths, self.offsets = starts, lengths, offsets
        self.line_z, self.line_str_z = line_z, line_str_z
        self._line: bytes | None = None
        self._line_str: bytes | None = None
        self._programs: dict[int, _Program] = {}

    @classmethod
    def build(cls, index: list[tuple[int, int, int]], line: bytes,
              line_str: bytes) -> LineTable:
        return cls(array("Q", (s for s, _l, _o in index)),
                   array("I", (min(ln, 0xFFFFFFFF) for _s, ln, _o in index)),
                   array("I", (o for _s, _l, o in index)),
                   zlib.compress(line, 6), zlib.compress(line_str, 6))

    def __len__(self) -> int:
        return len(self.starts)

    def lookup(self, address: int) -> LineInfo | None:
        """file:line of link-time ``address``, or None when no line program covers it."""
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0 or address >= self.starts[i] + self.lengths[i]:
            return None
        if self._line is None:
            self._line = Lazy(self.line_z, _MAX_LINE_DATA).get()
            self._line_str = Lazy(self.line_str_z, _MAX_LINE_DATA).get()
        off = self.offsets[i]
        prog = self._programs.get(off)
        if prog is None:
            if len(self._programs) >= _MAX_PROGRAMS_CACHED:
                self._programs.clear()
            prog = _Program(self._line, off, self._line_str or b"")
            self._programs[off] = prog
        return prog.lookup(address)

