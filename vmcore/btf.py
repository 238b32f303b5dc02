"""Struct layouts from the kernel's BTF (``.BTF`` section), for a chosen list of types.

Format: ``include/uapi/linux/btf.h``. A header (magic 0xeB9F) locates a type section and a
string section; types are numbered from 1 in order, each a 12-byte ``btf_type`` followed by
kind-specific data whose size depends on the kind and ``vlen``. Only the named structs and
unions (and the members of their anonymous members, flattened) are materialised.

One parser for BTF from a vmlinux (``symbol_cache`` builds packs with it) and from a dump's
memory (``__start_BTF``..``__stop_BTF``). The data is hostile: type references may form cycles
and sizes may be absurd, so recursion is depth-bounded, an anonymous member that contains
itself is refused, and the members visited per parse are capped (:data:`MAX_MEMBER_VISITS`);
every violation raises :class:`~vmcore.errors.BadBtf`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vmcore.errors import BadBtf

__all__ = ["MAX_MEMBER_VISITS", "Member", "StructLayout", "member_offset", "parse_btf_structs"]

_MAGIC = 0xEB9F
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MAX_TYPES = 2_000_000
_MAX_DEPTH = 16
MAX_MEMBER_VISITS = 100_000  # the analysis structs need a few thousand

(_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT,
 _FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64) = range(1, 20)

# Extra bytes after btf_type: fixed, or per vlen item.
_FIXED = {_INT: 4, _ARRAY: 12, _VAR: 4, _DECL_TAG: 4}
_PER_ITEM = {_STRUCT: 12, _UNION: 12, _ENUM: 8, _FUNC_PROTO: 8, _DATASEC: 12, _ENUM64: 12}
_MODIFIERS = {_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG}
# by kind: (fixed extra bytes, extra bytes per vlen item); (-1, 0) for an unknown kind
_EXTRA = [(-1, 0)] + [(_FIXED.get(k, 0), _PER_ITEM.get(k, 0)) for k in range(1, _ENUM64 + 1)] \
    + [(-1, 0)] * (32 - _ENUM64 - 1)


@dataclass(frozen=True)
class Member:
    """A struct member: ``bit_offset`` from the start of the struct, ``bit_size`` non-zero only
    for bit-fields, ``size`` in bytes of its type, ``type`` its C type as text."""

    name: str
    bit_offset: int
    bit_size: int
    size: int
    type: str

    @property
    def offset(self) -> int:
        """Byte offset from the start of the struct."""
        return self.bit_offset // 8


@dataclass(frozen=True)
class StructLayout:
    """A struct or union: ``size`` in bytes and its members by name."""

    name: str
    kind: str
    size: int
    members: dict[str, Member]


class _Btf:
    def __init__(self, data: bytes):
        if len(data) < _HDR.size:
            raise BadBtf("BTF shorter than its header")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(
            data)
        if magic != _MAGIC:
            raise BadBtf(f"BTF magic {magic:#x} is not {_MAGIC:#x} (big-endian BTF?)")
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if t0 + type_len > len(data) or s0 + str_len > len(data):
            raise BadBtf("BTF type or string section outside the data")
        self.data = data
        self.visits = 0
        self.strings = data[s0 : s0 + str_len]
        self.offsets = [0]  # type id -> byte offset of its btf_type (id 0 is void)
        self.aggregates: list[int] = []  # ids of the named structs and unions
        offsets, aggregates = self.offsets, self.aggregates
        info_at = struct.Struct("<I").unpack_from
        extra, append, zero = _EXTRA, offsets.append, b"\0" * 4
        pos, end = t0, t0 + type_len
        while pos < end:
            if pos + _TYPE.size > end:
                raise BadBtf("BTF type truncated", offset=pos)
            if len(offsets) > _MAX_TYPES:
                raise BadBtf(f"BTF has more than {_MAX_TYPES} types")
            info = info_at(data, pos + 4)[0]
            kind = (info >> 24) & 0x1F
            fixed, per_item = extra[kind]
            if fixed < 0:
                raise BadBtf(f"BTF type {len(offsets)} has unknown kind {kind}", offset=pos)
            if kind in (_STRUCT, _UNION) and data[pos:pos + 4] != zero:
                aggregates.append(len(offsets))
            append(pos)
            pos += 12 + fixed + per_item * (info & 0xFFFF)
        if pos != end:
            raise BadBtf("BTF type section overruns its length", offset=pos)

    def name(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        if off >= len(self.strings) or end < 0:
            raise BadBtf("BTF name offset outside the string section", offset=off)
        return self.strings[off:end].decode("utf-8", "replace")

    def type(self, tid: int) -> tuple[str, int, int, int, int]:
        """(name, kind, vlen, kind_flag, size_or_type) of type ``tid``."""
        if not 0 < tid < len(self.offsets):
            raise BadBtf(f"BTF type id {tid} out of range")
        name_off, info, size = _TYPE.unpack_from(self.data, self.offsets[tid])
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
            elem, _index, nelems = struct.unpack_from("<III", self.data,
                                                      self.offsets[tid] + _TYPE.size)
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
            elem, _index, nelems = struct.unpack_from("<III", self.data,
                                                      self.offsets[tid] + _TYPE.size)
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
        pos = self.offsets[tid] + _TYPE.size
        for i in range(vlen):
            self.visits += 1
            if self.visits > MAX_MEMBER_VISITS:
                raise BadBtf(f"BTF members: more than {MAX_MEMBER_VISITS} visited")
            name_off, mtype, moff = struct.unpack_from("<III", self.data, pos + 12 * i)
            bit_off, bit_size = (moff & 0xFFFFFF, moff >> 24) if kind_flag else (moff, 0)
            mname = self.name(name_off)
            resolved = self._strip(mtype)
            if not mname:
                rkind = self.type(resolved)[1] if resolved else 0
                if rkind in (_STRUCT, _UNION):  # anonymous struct/union: flatten
                    self.members(resolved, base_bits + bit_off, out, depth + 1,
                                 (*path, tid))
                continue
            out.setdefault(mname, Member(mname, base_bits + bit_off, bit_size,
                                         self.size_of(mtype), self.type_name(mtype)))

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
    wanted = set(names)
    out: dict[str, StructLayout] = {}
    for tid in btf.aggregates:
        name_off, info, size = _TYPE.unpack_from(btf.data, btf.offsets[tid])
        kind = (info >> 24) & 0x1F
        name = btf.name(name_off)
        if name not in wanted or name in out:
            continue
        members: dict[str, Member] = {}
        btf.members(tid, 0, members, 0)
        out[name] = StructLayout(name, "union" if kind == _UNION else "struct", size, members)
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
