"""Struct layouts from the kernel's BTF (``.BTF`` section), for a chosen list of types.

Format: ``include/uapi/linux/btf.h``. A header (magic 0xeB9F) locates a type section and a
string section; types are numbered from 1 in order, each a 12-byte ``btf_type`` followed by
kind-specific data whose size depends on the kind and ``vlen``. Only the named structs and
unions (and the members of their anonymous members, flattened) are materialised.

One parser for BTF from a vmlinux (``symbol_cache`` builds packs with it: the whole section
at once, :func:`parse_btf_structs`) and from a dump's memory (``__start_BTF``..``__stop_BTF``,
read piecewise as lookups need it: :mod:`vmcore.btf_lazy`). The data is hostile: type
references may form cycles and sizes may be absurd, so recursion is depth-bounded, an
anonymous member that contains itself is refused, and the members visited per parse are
capped (:data:`MAX_MEMBER_VISITS`); every violation raises :class:`~vmcore.errors.BadBtf`.
"""

from __future__ import annotations

import bisect
import re
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice

from vmcore.errors import BadBtf

__all__ = ["MAX_MEMBER_VISITS", "Member", "StructLayout", "member_offset", "parse_btf_structs"]

_MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")
_MAX_TYPES = 2_000_000
_MAX_DEPTH = 16
_MAX_NAME_HITS = 4096  # BTF deduplicates its strings: one copy of each name
MAX_MEMBER_VISITS = 100_000  # the analysis structs need a few thousand

(_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT,
 _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64) = range(1, 20)

# Extra bytes after btf_type: fixed, or per vlen item.
_FIXED = {_INT: 4, _ARRAY: 12, _VAR: 4, _DECL_TAG: 4}
_PER_ITEM = {_STRUCT: 12, _UNION: 12, _ENUM: 8, _FUNC_PROTO: 8, _DATASEC: 12, _ENUM64: 12}
_MODIFIERS = {_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG}
# by kind: words of a record without its vlen items (-1: unknown kind), words per vlen item
_STEP = [-1] + [3 + _FIXED.get(k, 0) // 4 for k in range(1, _ENUM64 + 1)] \
    + [-1] * (32 - _ENUM64 - 1)
_PER_WORDS = [0] + [_PER_ITEM.get(k, 0) // 4 for k in range(1, _ENUM64 + 1)] \
    + [0] * (32 - _ENUM64 - 1)


class Member:
    """A struct member: ``bit_offset`` from the start of the struct, ``bit_size`` non-zero only
    for bit-fields, ``size`` in bytes of its type, ``type`` its C type as text. A member of
    lazily read BTF (:mod:`vmcore.btf_lazy`) resolves ``size`` and ``type`` on first use:
    the types they name may lie anywhere in the type section, which is then read that far."""

    __slots__ = ("_resolve", "_size", "_type", "bit_offset", "bit_size", "name")

    def __init__(self, name: str, bit_offset: int, bit_size: int, size: int = 0,
                 type: str = "", resolve: Callable[[], tuple[int, str]] | None = None):
        self.name, self.bit_offset, self.bit_size = name, bit_offset, bit_size
        self._size, self._type, self._resolve = size, type, resolve

    def _resolved(self) -> None:
        if self._resolve is not None:
            self._size, self._type = self._resolve()
            self._resolve = None

    @property
    def size(self) -> int:
        self._resolved()
        return self._size

    @property
    def type(self) -> str:
        self._resolved()
        return self._type

    @property
    def offset(self) -> int:
        """Byte offset from the start of the struct."""
        return self.bit_offset // 8

    def _key(self) -> tuple[str, int, int, int, str]:
        return self.name, self.bit_offset, self.bit_size, self.size, self.type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Member) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Member(name={!r}, bit_offset={}, bit_size={}, size={}, type={!r})".format(
            *self._key())


@dataclass(frozen=True)
class StructLayout:
    """A struct or union: ``size`` in bytes and its members by name."""

    name: str
    kind: str
    size: int
    members: dict[str, Member]


def _header(head: bytes, total: int) -> tuple[int, int, int, int]:
    """(type section start, its length, string section start, its length) of BTF whose first
    bytes are ``head`` and whose length is ``total``, checked."""
    if len(head) < _HDR.size or total < _HDR.size:
        raise BadBtf("BTF shorter than its header")
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(head)
    if magic != _MAGIC:
        raise BadBtf(f"BTF magic {magic:#x} is not {_MAGIC:#x} (big-endian BTF?)")
    t0, s0 = hdr_len + type_off, hdr_len + str_off
    if t0 + type_len > total or s0 + str_len > total:
        raise BadBtf("BTF type or string section outside the data")
    if t0 % 4 or type_len % 4:
        raise BadBtf("BTF type section is not 4-byte aligned", offset=t0)
    return t0, type_len, s0, str_len


def _index_records(words: array, offsets: array, pos: int, lengths: dict[int, int],
                   t0: int) -> int:
    """Append to ``offsets`` the word index of each complete record of ``words`` from word
    ``pos`` on; returns where the first incomplete one (or the end) is. A record's length
    depends only on its ``info`` word (kind and vlen), and kernel BTF repeats few distinct
    ones: they are kept in ``lengths``. ``t0`` (the section's byte offset) places errors."""
    append, end = offsets.append, len(words)
    while pos + 3 <= end:
        info = words[pos + 1]
        n = lengths.get(info)
        if n is None:
            kind = (info >> 24) & 0x1F
            if _STEP[kind] < 0:
                raise BadBtf(f"BTF type {len(offsets)} has unknown kind {kind}",
                             offset=t0 + 4 * pos)
            n = lengths[info] = _STEP[kind] + _PER_WORDS[kind] * (info & 0xFFFF)
        if pos + n > end:
            break
        if len(offsets) > _MAX_TYPES:
            raise BadBtf(f"BTF has more than {_MAX_TYPES} types")
        append(pos)
        pos += n
    return pos


def _end_error(pos: int, end: int, t0: int) -> BadBtf:
    """Why a whole type section does not end where its last record does (``pos``)."""
    if pos + 3 > end:
        return BadBtf("BTF type truncated", offset=t0 + 4 * pos)
    return BadBtf("BTF type section overruns its length", offset=t0 + 4 * pos)


class _Btf:
    """The type section as 32-bit words (every BTF record is a multiple of 4 bytes and the
    section is 4-byte aligned, as the kernel's verifier requires), walked once to index the
    types; names are compared as string-section offsets, not decoded."""

    def __init__(self, data: bytes):
        t0, type_len, s0, str_len = _header(data, len(data))
        self.visits = 0
        self.strings = data[s0 : s0 + str_len]
        self.raw = data[t0 : t0 + type_len]
        words = array("I")
        words.frombytes(self.raw)
        if sys.byteorder == "big":
            words.byteswap()
        self.words = words
        self.offsets = self._walk(words, t0)  # type id -> word index (id 0 is void)

    def _ensure(self, tid: int) -> None:
        """Make type ``tid`` addressable (every type already is here)."""

    @staticmethod
    def _walk(words: array, t0: int) -> array:
        """Word index of each type (:func:`_index_records` over the whole section)."""
        offsets = array("I", [0])
        pos = _index_records(words, offsets, 0, {}, t0)
        if pos != len(words):
            raise _end_error(pos, len(words), t0)
        return offsets

    def find_aggregates(self, wanted: dict[int, str]) -> list[tuple[int, str]]:
        """(type id, name) of the first struct or union named by each ``name_off`` of
        ``wanted``, in type order: each offset's four bytes are searched in the type section
        at C speed, and a hit counts where a type starts (found by bisection in the type
        index) and is a struct or union."""
        w, offsets, raw = self.words, self.offsets, self.raw
        found: list[tuple[int, str]] = []
        for off, name in wanted.items():
            needle = off.to_bytes(4, "little")  # BTF here is little-endian (magic checked)
            at = raw.find(needle)
            for _ in range(_MAX_NAME_HITS):
                if at < 0:
                    break
                if at % 4 == 0:
                    p = at // 4
                    tid = bisect.bisect_left(offsets, p, 1)
                    if tid < len(offsets) and offsets[tid] == p and \
                            (w[p + 1] >> 24) & 0x1F in (_STRUCT, _UNION):
                        found.append((tid, name))
                        break
                at = raw.find(needle, at + 1)
        return sorted(found)

    def name(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        if off >= len(self.strings) or end < 0:
            raise BadBtf("BTF name offset outside the string section", offset=off)
        return self.strings[off:end].decode("utf-8", "replace")

    def type(self, tid: int) -> tuple[str, int, int, int, int]:
        """(name, kind, vlen, kind_flag, size_or_type) of type ``tid``."""
        self._ensure(tid)
        if not 0 < tid < len(self.offsets):
            raise BadBtf(f"BTF type id {tid} out of range")
        w, p = self.words, self.offsets[tid]
        name_off, info, size = w[p], w[p + 1], w[p + 2]
        return self.name(name_off), (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size

    def size_of(self, tid: int, depth: int = 0) -> int:
        if tid == 0 or depth > _MAX_DEPTH:
            return 0
        _name, kind, _vlen, _kf, size = self.type(tid)
        if kind in _MODIFIERS:
            return self.size_of(size, depth + 1)
        if kind == _PTR:
            return 8
        if kind == _ARRAY:
            p = self.offsets[tid]
            elem, nelems = self.words[p + 3], self.words[p + 5]
            return self.size_of(elem, depth + 1) * nelems
        if kind in (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT, _DATASEC):
            return size
        return 0

    def type_name(self, tid: int, depth: int = 0) -> str:
        if tid == 0:
            return "void"
        if depth > _MAX_DEPTH:
            return "?"
        name, kind, _vlen, kind_flag, size = self.type(tid)
        if kind == _PTR:
            return self.type_name(size, depth + 1) + " *"
        if kind == _ARRAY:
            p = self.offsets[tid]
            elem, nelems = self.words[p + 3], self.words[p + 5]
            return f"{self.type_name(elem, depth + 1)}[{nelems}]"
        if kind in (_CONST, _VOLATILE, _RESTRICT, _TYPE_TAG):
            prefix = {_CONST: "const ", _VOLATILE: "volatile ", _RESTRICT: "restrict "}
            return prefix.get(kind, "") + self.type_name(size, depth + 1)
        if kind in (_STRUCT, _UNION) or (kind == _FWD):
            tag = "union" if kind == _UNION or (kind == _FWD and kind_flag) else "struct"
            return f"{tag} {name or '(anon)'}"
        if kind in (_ENUM, _ENUM64):
            return f"enum {name or '(anon)'}"
        if kind == _FUNC_PROTO:
            return "func"
        return name or "?"

    def members(self, tid: int, base_bits: int, out: dict[str, Member], depth: int,
                path: tuple[int, ...] = ()) -> None:
        if depth > _MAX_DEPTH:
            raise BadBtf("BTF anonymous members nest too deeply")
        if tid in path:
            raise BadBtf(f"BTF type {tid} contains itself")
        _name, _kind, vlen, kind_flag, _size = self.type(tid)
        w, pos = self.words, self.offsets[tid] + 3
        for i in range(vlen):
            self.visits += 1
            if self.visits > MAX_MEMBER_VISITS:
                raise BadBtf(f"BTF members: more than {MAX_MEMBER_VISITS} visited")
            name_off, mtype, moff = w[pos + 3 * i], w[pos + 3 * i + 1], w[pos + 3 * i + 2]
            bit_off, bit_size = (moff & 0xFFFFFF, moff >> 24) if kind_flag else (moff, 0)
            mname = self.name(name_off)
            if not mname:
                resolved = self._strip(mtype)
                rkind = self.type(resolved)[1] if resolved else 0
                if rkind in (_STRUCT, _UNION):  # anonymous struct/union: flatten
                    self.members(resolved, base_bits + bit_off, out, depth + 1,
                                 (*path, tid))
                continue
            if mname not in out:
                out[mname] = self._member(mname, base_bits + bit_off, bit_size, mtype)

    def _member(self, name: str, bit_offset: int, bit_size: int, mtype: int) -> Member:
        return Member(name, bit_offset, bit_size, self.size_of(mtype), self.type_name(mtype))

    def _strip(self, tid: int) -> int:
        for _ in range(_MAX_DEPTH):
            if tid == 0:
                return 0
            _n, kind, _v, _kf, size = self.type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = size
        return tid


def parse_btf_structs(data: bytes, names: Iterable[str]) -> dict[str, StructLayout]:
    """Layouts of the structs/unions called ``names`` that BTF defines (missing names are
    skipped: feature detection is the reader's job). The first complete definition wins."""
    btf = _Btf(data)
    out: dict[str, StructLayout] = {}
    w = btf.words
    for tid, name in btf.find_aggregates(_name_offsets(btf.strings, names)):
        if name in out:  # a name written twice in the strings
            continue
        p = btf.offsets[tid]
        info, size = w[p + 1], w[p + 2]
        kind = (info >> 24) & 0x1F
        members: dict[str, Member] = {}
        btf.members(tid, 0, members, 0)
        out[name] = StructLayout(name, "union" if kind == _UNION else "struct", size, members)
    return out


def _name_offsets(strings: bytes, names: Iterable[str]) -> dict[int, str]:
    """String-section offsets at which each of ``names`` is written (NUL-terminated), so
    that types are matched by their ``name_off`` without decoding every name: one regular
    expression pass over the section, at most :data:`_MAX_NAME_HITS` hits."""
    wanted = sorted({n.encode() for n in names}, key=len, reverse=True)
    if not wanted:
        return {}
    pattern = re.compile(rb"\0(" + b"|".join(map(re.escape, wanted)) + rb")(?=\0)")
    out: dict[int, str] = {}
    # padded[at] is the NUL before a name, so strings[at] is where the name starts
    for m in islice(pattern.finditer(b"\0" + strings), _MAX_NAME_HITS):
        out[m.start()] = m.group(1).decode()
    return out


def member_offset(types: Mapping[str, StructLayout], struct_name: str, path: str) -> int | None:
    """Byte offset of dotted member ``path`` (``thread.sp``) in ``struct_name``, or None when
    the struct or a member is not in ``types``."""
    offset = 0
    layout = types.get(struct_name)
    parts = path.split(".")
    for n, part in enumerate(parts):
        if layout is None or part not in layout.members:
            return None
        member = layout.members[part]
        offset += member.offset
        if n + 1 < len(parts):
            layout = types.get(member.type.removeprefix("struct ").removeprefix("union "))
    return offset
