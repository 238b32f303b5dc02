"""Page decompression for kdump-compressed dumps: zlib, LZO1X, snappy, zstd.

Bindings are imported on first use so a dump that uses only zlib never loads the others.
The flag values are those of makedumpfile's ``diskdump_mod.h`` (also used in the header's
``status`` field).
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Callable

from vmcore.errors import CorruptDump, UnsupportedDump

__all__ = ["FLAG_LZO", "FLAG_SNAPPY", "FLAG_ZLIB", "FLAG_ZSTD", "decompress_page", "method_name"]

FLAG_ZLIB = 0x01
FLAG_LZO = 0x02
FLAG_SNAPPY = 0x04
FLAG_ZSTD = 0x20
_ALL = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD


def method_name(flags: int) -> str:
    """The compression named by page/header ``flags`` (``none`` when no bit is set)."""
    for bit, name in ((FLAG_ZLIB, "zlib"), (FLAG_LZO, "lzo"), (FLAG_SNAPPY, "snappy"),
                      (FLAG_ZSTD, "zstd")):
        if flags & bit:
            return name
    return "none"


def _zlib(data: bytes, size: int) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, size)  # max_length bounds the output
    return out


def _lzo(data: bytes, size: int) -> bytes:
    import lzo

    return bytes(lzo.decompress(data, False, size))


def _snappy(data: bytes, size: int) -> bytes:
    import cramjam

    # The raw stream starts with its decompressed length (a varint); refuse a lying one before
    # the binding allocates it.
    declared, shift = 0, 0
    for i, byte in enumerate(data[:10]):
        declared |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
        if i == 9:
            raise CorruptDump("snappy length varint too long")
    if declared != size:
        raise CorruptDump(f"snappy page declares {declared} bytes, want {size}")

    return bytes(cramjam.snappy.decompress_raw(data))


def _zstd(data: bytes, size: int) -> bytes:
    import cramjam

    return bytes(cramjam.zstd.decompress(data, output_len=size))


_METHODS: dict[int, Callable[[bytes, int], bytes]] = {
    FLAG_ZLIB: _zlib,
    FLAG_LZO: _lzo,
    FLAG_SNAPPY: _snappy,
    FLAG_ZSTD: _zstd,
}


def decompress_page(flags: int, data: bytes, page_size: int, offset: int) -> bytes:
    """Decompress one page stored at file ``offset`` with descriptor ``flags``.

    Returns exactly ``page_size`` bytes or raises :class:`CorruptDump` (wrong length, bad
    stream) / :class:`UnsupportedDump` (unknown flag bits).
    """
    method = flags & _ALL
    if method == 0:
        if len(data) != page_size:
            raise CorruptDump(f"raw page of {len(data)} bytes, page size is {page_size}",
                              offset=offset)
        return data
    fn = _METHODS.get(method)
    if fn is None:
        raise UnsupportedDump(f"page compression flags {flags:#x}", offset=offset)
    key = (method, page_size, hashlib.blake2b(data, digest_size=20).digest())
    out = _PAGES.get(key)
    if out is not None:
        return out
    try:
        out = fn(data, page_size)
    except CorruptDump as exc:
        raise CorruptDump(exc.what, offset=offset) from exc
    except Exception as exc:  # each binding has its own error types
        raise CorruptDump(f"{method_name(method)} page does not decompress: {exc}",
                          offset=offset) from exc
    if len(out) != page_size:
        raise CorruptDump(
            f"{method_name(method)} page decompresses to {len(out)} bytes, want {page_size}",
            offset=offset,
        )
    _PAGES.put(key, out)
    return out


class _PageCache:
    """Decompressed pages by their compressed bytes' digest, shared by every dump a process
    reads: dumps of one kernel build hold the same read-only pages (the BTF, kallsyms and ORC
    tables a deep analysis without a pack reads, ~1,000 pages), compressed the same way.
    Content-addressed, so a dump can only ever get back what its own bytes decompress to.
    At most ``limit`` pages (FIFO); safe across threads (the analyzer's in-flight events)."""

    def __init__(self, limit: int):
        self._limit = limit
        self._pages: dict[tuple[int, int, bytes], bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, bytes]) -> bytes | None:
        return self._pages.get(key)

    def put(self, key: tuple[int, int, bytes], page: bytes) -> None:
        with self._lock:
            self._pages[key] = page
            while len(self._pages) > self._limit:
                self._pages.pop(next(iter(self._pages)))


_PAGES = _PageCache(4096)  # 16 MiB of 4 KiB pages
