"""The symbol pack: one versioned, checksummed file per kernel build, named by build-id.

Layout (little-endian; see ``docs/symbol-pack.md``)::

    header   128 bytes: magic "CFSYMPK\\0", u16 version, u16 header size, u32 section count,
             u64 payload length, u8 build-id length, 7 pad, 64-byte build-id, 32-byte SHA-256
             of the payload (everything after the header)
    table    section count * (8-byte tag, u64 offset from file start, u64 length)
    sections 8-byte aligned

Sections: META (JSON), SYMADDR (u64[n]), SYMNOFF (u32[n]), SYMSIZE (u32[n] ELF sizes),
SYMKIND (n nm letters), SYMNAMZ (zlib: NUL-terminated names), ORCIPZ (zlib: u32[m] offsets from
META.orc_base), ORCENTZ (zlib: 6-byte entries), ORCHDR (raw ``.orc_header``, optional), TYPES
(JSON),
and optionally LNSTART (u64[k]), LNLEN (u32[k]), LNOFF (u32[k] .debug_line offsets), LINEZ
(zlib ``.debug_line``), LSTRZ (zlib ``.debug_line_str``).
Readers ignore unknown tags; a format change that old readers cannot ignore bumps the version.
"""

from __future__ import annotations

import hashlib
import json
import struct
from array import array
from dataclasses import dataclass
from typing import Any

from symbol_cache._lazy import Lazy
from symbol_cache.btf import Member, StructLayout
from symbol_cache.errors import BuildIdMismatch, CorruptPack, MalformedInput
from symbol_cache.lines import LineInfo, LineTable
from symbol_cache.orc import OrcTable
from symbol_cache.symtab import SymbolTable
from vmcore.btf import member_offset

__all__ = ["FORMAT_VERSION", "PackMeta", "SymbolPack", "decode_pack", "encode_pack"]

MAGIC = b"CFSYMPK\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHHIQB7x64s32s")
_ENTRY = struct.Struct("<8sQQ")
_MAX_SECTIONS = 64
_MAX_META = 1 << 20


@dataclass(frozen=True)
class PackMeta:
    """What a pack describes: ``vmlinux_size`` in bytes, ``created`` in Unix seconds."""

    build_id: str
    release: str | None
    banner: str | None
    source: str
    vmlinux_size: int
    created: float
    producer: str
    orc_base: int
    kind: str = "vmlinux"  # or "module"
    module_name: str | None = None
    # Module packs: (section name, size in bytes) per slot; see symbol_cache.modules.
    module_sections: tuple[tuple[str, int], ...] = ()
    names_bytes: int = 0  # expanded size of SYMNAMZ
    orc_count: int = 0  # entries in ORCIPZ / ORCENTZ


@dataclass(frozen=True)
class SymbolPack:
    """A decoded pack: metadata, symbols, ORC tables, struct layouts, line index; ``size`` is
    the encoded pack's length in bytes (0 until encoded)."""

    meta: PackMeta
    symbols: SymbolTable
    orc: OrcTable
    types: dict[str, StructLayout]
    lines: LineTable | None = None
    size: int = 0

    @property
    def build_id(self) -> str:
        return self.meta.build_id

    def line_for(self, address: int) -> LineInfo | None:
        """file:line of link-time ``address`` (None without line info for it)."""
        return self.lines.lookup(address) if self.lines is not None else None

    def member_offset(self, struct_name: str, path: str) -> int | None:
        """Byte offset of dotted member ``path`` (``thread.sp``) in ``struct_name``, or None
        when the struct or a member is not in the pack."""
        return member_offset(self.types, struct_name, path)


def _types_json(types: dict[str, StructLayout]) -> bytes:
    doc = {
        name: {"kind": t.kind, "size": t.size,
               "members": {m.name: [m.bit_offset, m.bit_size, m.size, m.type]
                           for m in t.members.values()}}
        for name, t in sorted(types.items())
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_pack(pack: SymbolPack) -> bytes:
    """The pack's bytes (deterministic for equal contents)."""
    sym = pack.symbols
    if (pack.meta.names_bytes, pack.meta.orc_count) != (len(sym.names), len(pack.orc)):
        raise ValueError("PackMeta names_bytes/orc_count disagree with the tables")
    meta = json.dumps(pack.meta.__dict__, sort_keys=True).encode()
    orc_ips, orc_entries = pack.orc.packed()
    sections: list[tuple[bytes, bytes]] = [
        (b"META", meta),
        (b"SYMADDR", sym.addrs.tobytes()),
        (b"SYMNOFF", sym.name_offs.tobytes()),
        (b"SYMSIZE", sym.elf_sizes.tobytes()),
        (b"SYMKIND", sym.kinds),
        (b"SYMNAMZ", sym.lazy_names.packed()),
        (b"ORCIPZ", orc_ips),
        (b"ORCENTZ", orc_entries),
        (b"TYPES", _types_json(pack.types)),
    ]
    if pack.orc.header is not None:
        sections.append((b"ORCHDR", pack.orc.header))
    if pack.lines is not None:
        ln = pack.lines
        sections += [(b"LNSTART", ln.starts.tobytes()), (b"LNLEN", ln.lengths.tobytes()),
                     (b"LNOFF", ln.offsets.tobytes()), (b"LINEZ", ln.line_z),
                     (b"LSTRZ", ln.line_str_z)]
    table_end = _HEADER.size + _ENTRY.size * len(sections)
    pos = (table_end + 7) & ~7
    table = bytearray()
    body = bytearray(b"\0" * (pos - table_end))
    for tag, data in sections:
        table += _ENTRY.pack(tag.ljust(8, b"\0"), pos, len(data))
        pad = (-len(data)) % 8
        body += data + b"\0" * pad
        pos += len(data) + pad
    payload = bytes(table) + bytes(body)
    bid = bytes.fromhex(pack.meta.build_id)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, _HEADER.size, len(sections), len(payload),
                          len(bid), bid, hashlib.sha256(payload).digest())
    return header + payload


def _arr(code: str, data: bytes | memoryview, tag: str) -> array:
    out = array(code)
    if len(data) % out.itemsize:
        raise CorruptPack(f"pack section {tag} length {len(data)} is not a multiple of "
                          f"{out.itemsize}")
    out.frombytes(data)
    return out


def decode_pack(data: bytes, *, expect_build_id: str | None = None,
                verify: bool = True) -> SymbolPack:
    """Check and decode a pack. Raises :class:`CorruptPack` on any inconsistency and
    :class:`BuildIdMismatch` when it is not the pack of ``expect_build_id``."""
    if len(data) < _HEADER.size:
        raise CorruptPack(f"pack of {len(data)} bytes is shorter than its header")
    magic, version, hsize, nsect, plen, bidlen, bid, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptPack("not a symbol pack (bad magic)")
    if version != FORMAT_VERSION or hsize != _HEADER.size:
        raise CorruptPack(f"pack format version {version} is not {FORMAT_VERSION}")
    if nsect > _MAX_SECTIONS or bidlen > 64 or _HEADER.size + plen != len(data):
        raise CorruptPack("pack header inconsistent with its length (truncated?)")
    build_id = bid[:bidlen].hex()
    if expect_build_id is not None and build_id != expect_build_id:
        raise BuildIdMismatch(expect_build_id, build_id)
    view = memoryview(data)
    if verify and hashlib.sha256(view[_HEADER.size :]).digest() != digest:
        raise CorruptPack("pack checksum mismatch", build_id=build_id)
    sections: dict[str, memoryview] = {}
    for i in range(nsect):
        tag, off, length = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
        if off + length > len(data) or off < _HEADER.size:
            raise CorruptPack(f"pack section {tag!r} outside the file", build_id=build_id)
        sections[tag.rstrip(b"\0").decode("ascii", "replace")] = view[off : off + length]
    try:
        if len(sections["META"]) > _MAX_META:
            raise CorruptPack("pack META too large", build_id=build_id)
        meta_doc: dict[str, Any] = json.loads(bytes(sections["META"]))
        meta_doc["module_sections"] = tuple(
            (str(n), int(z)) for n, z in meta_doc.get("module_sections", ()))
        meta = PackMeta(**meta_doc)
        if meta.build_id != build_id:
            raise CorruptPack("pack META build-id differs from its header", build_id=build_id)
        symbols = SymbolTable(_arr("Q", sections["SYMADDR"], "SYMADDR"),
                              _arr("I", sections["SYMNOFF"], "SYMNOFF"),
                              _arr("I", sections["SYMSIZE"], "SYMSIZE"),
                              bytes(sections["SYMKIND"]),
                              Lazy(bytes(sections["SYMNAMZ"]), meta.names_bytes))
        header = bytes(sections["ORCHDR"]) if "ORCHDR" in sections else None
        orc = OrcTable(meta.orc_base, Lazy(bytes(sections["ORCIPZ"]), 4 * meta.orc_count),
                       Lazy(bytes(sections["ORCENTZ"]), 6 * meta.orc_count), header,
                       count=meta.orc_count)
        lines = None
        if "LNSTART" in sections:
            lines = LineTable(_arr("Q", sections["LNSTART"], "LNSTART"),
                              _arr("I", sections["LNLEN"], "LNLEN"),
                              _arr("I", sections["LNOFF"], "LNOFF"),
                              bytes(sections["LINEZ"]), bytes(sections["LSTRZ"]))
        types: dict[str, StructLayout] = {}
        for name, doc in json.loads(bytes(sections["TYPES"])).items():
            members = {m: Member(m, v[0], v[1], v[2], v[3]) for m, v in doc["members"].items()}
            types[name] = StructLayout(name, doc["kind"], doc["size"], members)
    except CorruptPack:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise CorruptPack(f"pack contents malformed: {exc!r}", build_id=build_id) from None
    except MalformedInput as exc:  # from the table constructors
        raise CorruptPack(f"pack contents inconsistent: {exc}", build_id=build_id) from None
    return SymbolPack(meta, symbols, orc, types, lines, size=len(data))
