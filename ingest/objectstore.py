"""The object store contract: what the agent, analyzer and symbol cache need of S3.

Implementations: :class:`ingest.s3.S3ObjectStore` (any S3 API) and
:class:`ingest.localstore.LocalObjectStore` (a directory, for the embedded default). Both
pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["MIN_PART_SIZE", "ObjectInfo", "ObjectStore", "PartInfo", "SizedReader"]

# S3's minimum size of every multipart part but the last (5 MiB).
MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """An object's identity: ``size`` in bytes, user ``metadata`` (lower-case keys)."""

    key: str
    size: int
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartInfo:
    """One uploaded part of a multipart upload (``number`` from 1, ``size`` in bytes)."""

    number: int
    size: int
    etag: str


class SizedReader(Protocol):
    """A seekable binary reader of known length: a part body streamed from a file instead of
    held in memory (retries and request signing seek back to the start)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def __len__(self) -> int: ...


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are ``/``-separated relative names; values are bytes with string metadata."""

    @property
    def location(self) -> str:
        """Human-readable location (``s3://bucket`` or a directory) for logs and errors."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when there is no object at ``key``."""
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from offset ``start``; fewer only at the end of the object."""
        ...

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """Store ``data`` at ``key``, replacing any object there."""
        ...

    def put_if_absent(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Create ``key`` only if no object exists there; False when one already does."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it does not exist."""
        ...

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order."""
        ...

    def create_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        """Start a multipart upload to ``key``; returns its upload id."""
        ...

    def upload_part(self, key: str, upload_id: str, number: int,
                    data: bytes | SizedReader) -> PartInfo:
        """Upload part ``number`` (1-based) from bytes or a :class:`SizedReader`;
        re-uploading a number replaces it."""
        ...

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """The parts uploaded so far, by number; raises UploadNotFound for an unknown id."""
        ...

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo], *, if_absent: bool = False
    ) -> bool:
        """Assemble ``parts`` into the object. With ``if_absent``, False (and the upload
        aborted) when an object already exists at ``key``."""
        ...

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard an upload and its parts; no error when it is already gone."""
        ...
