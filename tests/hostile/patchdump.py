"""Hostile dumps made from a real one: its printk text patched in place, same length.

The committed dumps are flattened and zlib-compressed. A copy is reassembled in memory (as
``makedumpfile -R`` would); every page holding a needle is decompressed, patched with a
replacement of the same length and recompressed (zlib level 9, which fits in the room of
makedumpfile's level-1 page). The result is a kdump-compressed file whose kernel log says
what the test wants, every structure (ring descriptors, lengths, VMCOREINFO) left valid.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from vmcore.formats.diskdump import PAGE_DESC_SIZE, KdumpFile
from vmcore.formats.flattened import FlattenedSource, build_index
from vmcore.source import BytesSource

_ZLIB = 0x1


def reassemble(flat: Path) -> bytearray:
    src = BytesSource(flat.read_bytes())
    view = FlattenedSource(src, build_index(src))
    return bytearray(view.read(0, view.size))


def patch_pages(dump: bytearray, replacements: list[tuple[bytes, bytes]]) -> int:
    """Replace each needle by its same-length replacement in every zlib page holding it;
    returns how many pages changed."""
    for old, new in replacements:
        assert len(old) == len(new), (old, new)
    kf = KdumpFile(BytesSource(bytes(dump)))
    bitmap = bytes(dump[kf._bitmap2:kf._bitmap2 + kf._bitmap_bytes])
    pages = int.from_bytes(bitmap, "little").bit_count()
    changed = 0
    for i in range(pages):
        at = kf._desc_off + i * PAGE_DESC_SIZE
        offset, size, flags, pflags = struct.unpack_from("<qIIQ", dump, at)
        if flags != _ZLIB or offset == 0:
            continue
        page = zlib.decompress(bytes(dump[offset:offset + size]))
        patched = page
        for old, new in replacements:
            patched = patched.replace(old, new)
        if patched == page:
            continue
        packed = zlib.compress(patched, 9)
        assert len(packed) <= size, "patched page does not fit its room"
        dump[offset:offset + len(packed)] = packed
        struct.pack_into("<qIIQ", dump, at, offset, len(packed), flags, pflags)
        changed += 1
    return changed


def hostile_dump(flat: Path, out: Path, replacements: list[tuple[bytes, bytes]]) -> Path:
    """``flat`` reassembled into ``out`` with its pages patched; fails when no page held any
    needle (the dump would not be hostile)."""
    dump = reassemble(flat)
    assert patch_pages(dump, replacements) > 0, "no needle found in the dump's pages"
    out.write_bytes(dump)
    return out
