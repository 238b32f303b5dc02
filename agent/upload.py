"""Streaming, resumable, checksummed multipart upload of one dump file.

Memory stays small whatever the part size: a part in flight is a window on the file read on
demand (pread, at most 256 KiB at a time), never a buffer; the main thread reads each part
once, through one reused 1 MiB buffer, to hash it.
The file's SHA-256 is computed while its parts are read, in order, and must equal the digest
the object is named after (``dumps/<sha256>``), and the file must not have been written to
while its parts were sent (size and mtime unchanged), so a file that changed under the agent
is never published under a wrong name. A resumed upload re-reads (but does not re-send) the
parts S3 already holds, verifying each against the recorded size and ETag.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from agent.errors import DumpChanged
from ingest.errors import AccessDenied, UploadNotFound
from ingest.objectstore import ObjectInfo, ObjectStore, PartInfo

__all__ = ["MAX_PARTS", "RateLimiter", "UploadResult", "Uploader", "hash_fd", "head_or_none",
           "part_size_for"]

_READ_CHUNK = 1024 * 1024
# The most a part body hands out per read (reads may be short): bounds what each upload
# thread holds at once, whatever the caller asks for.
_SEND_CHUNK = 256 * 1024


class RateLimiter:
    """A token bucket shared by the upload threads: ``rate`` bytes per second (0 = none)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = clock()

    def take(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
            delay = start - now
        if delay > 0:
            self._sleep(delay)


MAX_PARTS = 9_000  # S3 allows 10,000; keep a margin


def part_size_for(size: int, minimum: int) -> int:
    """The part size for a ``size``-byte file: ``minimum``, or larger (whole MiB) when the
    file would otherwise need more than :data:`MAX_PARTS` parts."""
    need = -(-size // MAX_PARTS)
    mib = 1024 * 1024
    return max(minimum, -(-need // mib) * mib)


def _chunks(fd: int, start: int, end: int, buf: bytearray) -> Iterator[memoryview]:
    """Bytes ``[start, end)`` of ``fd`` as views of ``buf``, refilled in place by preadv: a
    whole-file pass allocates nothing per chunk. Each view is valid until the next one."""
    view = memoryview(buf)
    off = start
    while off < end:
        n = os.preadv(fd, [view[: min(len(buf), end - off)]], off)
        if not n:
            raise DumpChanged(f"file shrank: short read at offset {off}")
        yield view[:n]
        off += n


def hash_fd(fd: int, size: int) -> str:
    """SHA-256 (hex) of the first ``size`` bytes of open file ``fd``."""
    h = hashlib.sha256()
    for chunk in _chunks(fd, 0, size, bytearray(_READ_CHUNK)):
        h.update(chunk)
    return h.hexdigest()


def _read_exact(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)  # one read in the usual case: no extra copy
    if len(data) == length:
        return data
    buf = bytearray(data)
    while len(buf) < length:
        chunk = os.pread(fd, length - len(buf), offset + len(buf))
        if not chunk:
            raise DumpChanged(f"file shrank: short read at offset {offset + len(buf)}")
        buf += chunk
    return bytes(buf)


class _PartReader(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of an open file, read on demand with pread: the
    body of one part in flight, seekable for request signing and retries."""

    def __init__(self, fd: int, offset: int, length: int):
        super().__init__()
        self._fd, self._offset, self._length, self._pos = fd, offset, length, 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(0, base + offset), self._length)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        # One allocation per read: RawIOBase.read would allocate a buffer, read into it and
        # copy it to bytes. botocore reads 1 MiB at a time to sign a part over plain HTTP,
        # in every upload thread, so the extra copies add up to megabytes per thread.
        if size < 0:
            return self.readall()  # to the end of the window, in bounded reads
        n = min(size, _SEND_CHUNK, self._length - self._pos)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        if not data:
            raise DumpChanged(f"file shrank: short read at offset {self._offset + self._pos}")
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._length - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [view[:n]], self._offset + self._pos)
        if not got:
            raise DumpChanged(f"file shrank: short read at offset {self._offset + self._pos}")
        self._pos += got
        return got



def head_or_none(store: ObjectStore, key: str) -> ObjectInfo | None:
    """``store.head(key)``, None also when the credentials may not look (the agent's S3 policy
    can be write-only: it then uploads again, the same bytes under the same key)."""
    try:
        return store.head(key)
    except AccessDenied:
        return None

@dataclass(frozen=True)
class UploadResult:
    """What an upload did: bytes sent now, parts reused from an earlier attempt."""

    key: str
    sent_bytes: int
    reused_parts: int
    already_stored: bool


class Uploader:
    """Uploads files to ``store`` with ``part_size``-byte parts, ``concurrency`` in flight."""

    def __init__(self, store: ObjectStore, *, part_size: int, concurrency: int,
                 limiter: RateLimiter | None = None,
                 on_bytes: Callable[[int], None] | None = None):
        if part_size < 5 * 1024 * 1024:
            raise ValueError("part_size must be at least 5 MiB (S3's minimum)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.part_size = part_size
        self.concurrency = concurrency
        self.limiter = limiter or RateLimiter(0)
        self._on_bytes = on_bytes or (lambda n: None)

    def upload(
        self,
        fd: int,
        size: int,
        key: str,
        sha256: str,
        metadata: Mapping[str, str],
        *,
        upload_id: str | None = None,
        done_parts: tuple[PartInfo, ...] = (),
        part_size: int | None = None,
        on_start: Callable[[str, int], None] = lambda uid, ps: None,
        on_part: Callable[[PartInfo], None] = lambda p: None,
        on_data: Callable[[memoryview], None] = lambda b: None,
    ) -> UploadResult:
        """Upload ``size`` bytes of ``fd`` to ``key`` unless an object of that size is there.

        ``upload_id``/``done_parts``/``part_size`` resume an earlier attempt; ``on_start`` and
        ``on_part`` let the caller journal progress as it happens; ``on_data`` sees every byte
        of the file once, in order (to build a flattened dump's index while streaming), as
        views of a reused buffer: each is valid only until ``on_data`` returns.
        """
        existing = head_or_none(self.store, key)
        if existing is not None and existing.size == size:
            if hash_fd(fd, size) != sha256:
                raise DumpChanged(f"file no longer has SHA-256 {sha256}")
            return UploadResult(key, 0, 0, already_stored=True)
        if size < self.part_size and upload_id is None:
            return self._put_whole(fd, size, key, sha256, metadata, on_data)
        upload_id, ps, reused = self._open_multipart(key, size, metadata, upload_id, done_parts,
                                                     part_size, on_start)
        before = os.fstat(fd)
        parts, sent, digest = self._send_parts(fd, size, key, upload_id, ps, reused, on_part,
                                               on_data)
        after = os.fstat(fd)
        # The upload threads read the file a second time: it must not have been written to
        # in between (any write moves mtime), or what S3 holds may differ from what was hashed.
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            self.store.abort_multipart(key, upload_id)
            raise DumpChanged("file was written to during upload")
        if digest != sha256:
            self.store.abort_multipart(key, upload_id)
            raise DumpChanged(f"file changed during upload: SHA-256 {digest} != {sha256}")
        ordered = [parts[n] for n in range(1, max(1, -(-size // ps)) + 1)]
        created = self.store.complete_multipart(key, upload_id, ordered, if_absent=True)
        return UploadResult(key, sent, len(reused), already_stored=not created)

    def _put_whole(self, fd: int, size: int, key: str, sha256: str,
                   metadata: Mapping[str, str], on_data: Callable[[memoryview], None]
                   ) -> UploadResult:
        """A dump smaller than one part: one conditional PUT."""
        data = _read_exact(fd, 0, size)
        on_data(memoryview(data))
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DumpChanged(f"file no longer has SHA-256 {sha256}")
        self.limiter.take(size)
        self.store.put_if_absent(key, data, metadata)
        self._on_bytes(size)
        return UploadResult(key, size, 0, already_stored=False)

    def _open_multipart(self, key: str, size: int, metadata: Mapping[str, str],
                        upload_id: str | None, done_parts: tuple[PartInfo, ...],
                        part_size: int | None, on_start: Callable[[str, int], None]
                        ) -> tuple[str, int, dict[int, PartInfo]]:
        """Resume the journaled upload if S3 still has it, else start one: (upload id, part
        size in bytes, the parts reused exactly as journaled)."""
        if upload_id is not None and part_size:
            try:
                stored = {p.number: p for p in self.store.list_parts(key, upload_id)}
                # Reuse a part only if S3 has it exactly as journaled.
                return upload_id, part_size, {p.number: p for p in done_parts
                                              if stored.get(p.number) == p}
            except UploadNotFound:
                pass
        # (a journal without the part size cannot be resumed safely)
        ps = part_size_for(size, self.part_size)
        upload_id = self.store.create_multipart(key, metadata)
        on_start(upload_id, ps)
        return upload_id, ps, {}

    def _send_parts(self, fd: int, size: int, key: str, upload_id: str, ps: int,
                    reused: dict[int, PartInfo], on_part: Callable[[PartInfo], None],
                    on_data: Callable[[memoryview], None]
                    ) -> tuple[dict[int, PartInfo], int, str]:
        """Hash the file part by part while up to ``concurrency`` threads upload the parts not
        reused: (every part by number, bytes sent, SHA-256 hex of the whole file)."""
        nparts = max(1, -(-size // ps))
        h = hashlib.sha256()
        buf = bytearray(_READ_CHUNK)
        parts: dict[int, PartInfo] = dict(reused)
        sent = 0
        pending: set[Future[PartInfo]] = set()

        def send(number: int, body: _PartReader) -> PartInfo:
            part = self.store.upload_part(key, upload_id, number, body)
            self._on_bytes(len(body))
            return part

        def settle(fut: Future[PartInfo]) -> None:
            p = fut.result()
            parts[p.number] = p
            on_part(p)

        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="upload") as pool:
            try:
                for number in range(1, nparts + 1):
                    offset = (number - 1) * ps
                    length = min(ps, size - offset)
                    # Hash the part as a stream; the upload thread reads it again from the
                    # page cache, so no part is ever held in memory whole.
                    for chunk in _chunks(fd, offset, offset + length, buf):
                        h.update(chunk)
                        on_data(chunk)
                    if number in reused:
                        if reused[number].size != length:
                            raise DumpChanged(f"part {number} size differs from the journal")
                        continue
                    while len(pending) >= self.concurrency:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            settle(fut)
                    self.limiter.take(length)
                    pending.add(pool.submit(send, number, _PartReader(fd, offset, length)))
                    sent += length
                for fut in pending:
                    settle(fut)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
        return parts, sent, h.hexdigest()
