"""Errors of the symbol cache, split into retryable and permanent.

A :class:`RetryableSymbolError` means "try again later" (a debuginfod server timed out, a lease
is held by another builder that has not finished); a :class:`PermanentSymbolError` means the
same call cannot succeed (a vmlinux with the wrong build-id, a malformed ELF or BTF, no source
has the build).
"""

from __future__ import annotations

from foundation.errors import CrashfleetError

__all__ = [
    "BuildIdMismatch",
    "CorruptPack",
    "LeaseTimeout",
    "MalformedInput",
    "NotFound",
    "PermanentSymbolError",
    "ReleaseMismatch",
    "RetryableSymbolError",
    "SourceUnavailable",
    "SymbolCacheError",
]


class SymbolCacheError(CrashfleetError):
    """Base of all symbol-cache errors; ``build_id`` and ``path`` give context when known."""

    def __init__(self, message: str, *, build_id: str | None = None, path: str | None = None):
        self.build_id = build_id
        self.path = path
        super().__init__(message)


class RetryableSymbolError(SymbolCacheError):
    """The operation may succeed if tried again later."""

    retryable = True


class PermanentSymbolError(SymbolCacheError):
    """The same operation will fail again."""


class SourceUnavailable(RetryableSymbolError):
    """A source (debuginfod server, directory on a network mount) failed or timed out."""

    def __init__(self, source: str, detail: str, *, build_id: str | None = None):
        self.source = source
        super().__init__(f"{source}: {detail}", build_id=build_id)


class LeaseTimeout(RetryableSymbolError):
    """Another process holds the build lease and its pack did not appear in time."""


class NotFound(PermanentSymbolError):
    """No configured source has debug info for the build-id or release."""


class BuildIdMismatch(PermanentSymbolError):
    """A vmlinux or pack whose build-id differs from the one asked for."""

    def __init__(self, expected: str, actual: str, *, path: str | None = None):
        self.expected = expected
        self.actual = actual
        where = f" ({path})" if path else ""
        super().__init__(
            f"build-id mismatch{where}: expected {expected}, found {actual or 'none'}",
            build_id=expected,
            path=path,
        )


class ReleaseMismatch(PermanentSymbolError):
    """A vmlinux found by release whose banner is not the wanted kernel's."""

    def __init__(self, expected: str, actual: str | None, *, path: str | None = None):
        self.expected = expected
        self.actual = actual
        where = f" ({path})" if path else ""
        super().__init__(f"banner mismatch{where}: expected {expected!r}, found {actual!r}",
                         path=path)


class MalformedInput(PermanentSymbolError):
    """An ELF, BTF, debug package or other input is truncated or inconsistent.

    ``offset`` is the byte offset (within the file or section named in the message) when known.
    """

    def __init__(self, message: str, *, build_id: str | None = None, path: str | None = None,
                 offset: int | None = None):
        self.offset = offset
        at = f" at offset {offset:#x}" if offset is not None else ""
        super().__init__(message + at, build_id=build_id, path=path)


class CorruptPack(PermanentSymbolError):
    """A pack failed its magic, version, layout or checksum check; caches drop and rebuild it."""
