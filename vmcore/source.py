"""Random-access byte sources: where the decoder's bytes come from.

The decoder never needs a whole dump; it asks a :class:`ByteSource` for ranges. Sources here:
:class:`LocalFileSource` (``pread`` on a file), :class:`BytesSource` (in memory, for tests) and
:class:`ObjectStoreSource` (ranged GETs on an ``ingest`` object store through a bounded block
cache with read-ahead, counting the bytes it fetched). No I/O library is imported here: the
object store is injected.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from vmcore.errors import SourceMissing, SourceUnavailable, TruncatedDump

__all__ = [
    "ByteSource",
    "BytesSource",
    "LocalFileSource",
    "ObjectStoreSource",
    "read_exact",
]


@runtime_checkable
class ByteSource(Protocol):
    """A read-only byte range reader. ``size`` in bytes; ``name`` for messages."""

    @property
    def size(self) -> int: ...

    @property
    def name(self) -> str: ...

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset``; fewer only at the end of the source."""
        ...


def read_exact(src: ByteSource, offset: int, length: int, what: str) -> bytes:
    """Read exactly ``length`` bytes or raise :class:`TruncatedDump` naming ``what``."""
    if offset < 0 or length < 0:
        raise TruncatedDump(f"{what}: negative offset or length {length}", offset=offset)
    if offset + length > src.size:
        raise TruncatedDump(
            f"{what}: {length} bytes needed, dump {src.name} ends at {src.size:#x}", offset=offset
        )
    data = src.read(offset, length)
    if len(data) != length:
        raise TruncatedDump(f"{what}: short read ({len(data)} of {length} bytes)", offset=offset)
    return data


class BytesSource:
    """An in-memory source (tests, fuzzing, small objects)."""

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self._data = bytes(data)
        self._name = name

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def name(self) -> str:
        return self._name

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class LocalFileSource:
    """A local file read with ``pread``; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]):
        self._path = os.fspath(path)
        self._fd = os.open(self._path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        self.bytes_fetched = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def name(self) -> str:
        return self._path

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size:
            return b""
        data = os.pread(self._fd, min(length, self._size - offset), offset)
        self.bytes_fetched += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectStoreSource:
    """One object of an ``ingest.ObjectStore`` read through ranged GETs.

    Reads are served from a least-recently-used cache of ``block_size``-byte blocks holding at
    most ``max_blocks`` blocks (memory bound: ``block_size * max_blocks`` bytes). Runs of
    missing blocks are fetched with one request; when reads move forward sequentially the run is
    extended by a read-ahead window that doubles up to ``max_readahead`` blocks. An object of
    at most ``whole_object_max`` bytes that fits the cache is fetched whole by the first read:
    one request instead of one per header, bitmap, descriptor, ring and table run (each
    request costs milliseconds of client-side signing and parsing; a deep analysis reads most
    of a filtered dump anyway). A miss fetches at least ``min_fetch_blocks`` blocks (the
    tables a deep analysis reads lie close together). ``bytes_fetched`` and ``requests``
    count what was transferred.
    """

    def __init__(
        self,
        store: Any,
        key: str,
        *,
        size: int | None = None,
        block_size: int = 32 * 1024,
        max_blocks: int = 512,
        max_readahead: int = 8,
        whole_object_max: int = 0,
        min_fetch_blocks: int = 1,
    ):
        if block_size <= 0 or max_blocks <= 0 or max_readahead < 0:
            raise ValueError("block_size and max_blocks must be positive, max_readahead >= 0")
        self._store = store
        self._key = key
        if size is None:
            info = self._call(lambda: store.head(key), 0)
            if info is None:
                raise SourceMissing(f"no object {key!r} in {store.location}")
            size = int(info.size)
        self._size = size
        self._bs = block_size
        self._max_blocks = max_blocks
        self._max_ra = max_readahead
        self._ra = 0
        self._last_block = -2
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._min_fetch = max(1, min(min_fetch_blocks, max_blocks))
        self._whole = 0 < size <= min(whole_object_max, block_size * max_blocks)
        self.bytes_fetched = 0
        self.requests = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def name(self) -> str:
        return f"{self._store.location}/{self._key}"

    def _call(self, fn: Any, offset: int) -> Any:
        try:
            return fn()
        except Exception as exc:  # the injected store's errors vary by backend
            permanent = any(c.__name__ == "PermanentIngestError" for c in type(exc).__mro__)
            cls = SourceMissing if permanent else SourceUnavailable
            raise cls(f"object {self._key!r}: {exc}", offset=offset) from exc

    def _fetch(self, first: int, count: int) -> None:
        start = first * self._bs
        length = min(count * self._bs, self._size - start)
        data: bytes = self._call(lambda: self._store.get_range(self._key, start, length), start)
        self.requests += 1
        self.bytes_fetched += len(data)
        for i in range(count):
            chunk = data[i * self._bs : (i + 1) * self._bs]
            if not chunk:
                break
            self._cache[first + i] = chunk
            self._cache.move_to_end(first + i)
        while len(self._cache) > self._max_blocks:
            self._cache.popitem(last=False)

    def _block(self, n: int) -> bytes:
        blk = self._cache.get(n)
        if blk is not None:
            self._cache.move_to_end(n)
            return blk
        last = (self._size - 1) // self._bs
        if n == self._last_block + 1:
            self._ra = min(max(self._min_fetch, self._ra * 2), self._max_ra)
        else:
            self._ra = 0
        count = 1
        want = max(self._ra, self._min_fetch - 1)
        while count <= want and n + count <= last and (n + count) not in self._cache:
            count += 1
        self._fetch(n, count)
        return self._cache.get(n, b"")

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size or offset < 0:
            return b""
        end = min(offset + length, self._size)
        if self._whole:
            self._whole = False
            self._fetch(0, (self._size - 1) // self._bs + 1)
        first, lastb = offset // self._bs, (end - 1) // self._bs
        # Fetch a run of missing blocks in one request.
        missing = [b for b in range(first, lastb + 1) if b not in self._cache]
        if len(missing) > 1:
            self._fetch(missing[0], missing[-1] - missing[0] + 1)
        parts = []
        for b in range(first, lastb + 1):
            blk = self._block(b)
            lo = offset - b * self._bs if b == first else 0
            hi = end - b * self._bs if b == lastb else self._bs
            parts.append(blk[lo:hi])
        self._last_block = lastb
        return b"".join(parts)

