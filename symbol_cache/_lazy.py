"""zlib-compressed pack sections, decompressed on first use (bounded)."""

from __future__ import annotations

import zlib

from symbol_cache.errors import CorruptPack

__all__ = ["Lazy", "compress"]


def compress(data: bytes) -> bytes:
    return zlib.compress(data, 6)


class Lazy:
    """Compressed bytes expanding to at most ``limit`` bytes when first asked for."""

    def __init__(self, compressed: bytes, limit: int):
        self.compressed = compressed
        self.limit = limit
        self._data: bytes | None = None

    @classmethod
    def of(cls, data: bytes) -> Lazy:
        """An already expanded value (used while building)."""
        lazy = cls(b"", len(data))
        lazy._data = data
        return lazy

    def get(self) -> bytes:
        if self._data is None:
            d = zlib.decompressobj()
            try:
                data = d.decompress(self.compressed, self.limit + 1)
            except zlib.error as exc:
                raise CorruptPack(f"compressed pack section: {exc}") from None
            if len(data) > self.limit or not d.eof:
                raise CorruptPack("compressed pack section larger than declared or truncated")
            self._data = data
        return self._data

    def packed(self) -> bytes:
        return self.compressed if self._data is None else compress(self._data)
