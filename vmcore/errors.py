"""Errors of the dump decoder, split into retryable and permanent.

Every decoding error names the byte ``offset`` (in the dump file, or the physical/virtual
address for memory reads) and what was wrong there, so a bad dump can be diagnosed from the
message alone. A :class:`RetryableAnalyzerError` means the bytes could not be fetched (an S3
endpoint is down); retrying may succeed. A :class:`PermanentAnalyzerError` means the dump
itself is unusable for the request; retrying cannot help.
"""

from __future__ import annotations

__all__ = [
    "AddressNotMapped",
    "AnalyzerError",
    "BadBtf",
    "BadKallsyms",
    "BadOrc",
    "CorruptDump",
    "PageExcluded",
    "PermanentAnalyzerError",
    "RetryableAnalyzerError",
    "SourceMissing",
    "SourceUnavailable",
    "TruncatedDump",
    "UnsupportedDump",
]


class AnalyzerError(Exception):
    """Base of all decoder errors.

    ``offset`` is where the problem is: a file offset for format errors, an address for memory
    errors (see ``space``: ``"file"``, ``"phys"`` or ``"virt"``). ``what`` says what was wrong.
    """

    retryable = False

    def __init__(self, what: str, *, offset: int | None = None, space: str = "file"):
        self.what = what
        self.offset = offset
        self.space = space
        where = "" if offset is None else f" at {space} offset {offset:#x}"
        super().__init__(f"{what}{where}")


class RetryableAnalyzerError(AnalyzerError):
    """The bytes could not be fetched now; the same call may succeed later."""

    retryable = True


class PermanentAnalyzerError(AnalyzerError):
    """The dump cannot answer this request; retrying will not help."""


class SourceUnavailable(RetryableAnalyzerError):
    """The byte source (an object store) failed to deliver a range."""


class SourceMissing(PermanentAnalyzerError):
    """The byte source has no such object (or refuses the range for good)."""


class TruncatedDump(PermanentAnalyzerError):
    """The dump ends before a structure it declares."""


class CorruptDump(PermanentAnalyzerError):
    """A header field or record contradicts the format (bad magic, impossible size, loop)."""


class UnsupportedDump(PermanentAnalyzerError):
    """A valid dump in a layout this decoder does not read (e.g. the legacy printk buffer)."""


class PageExcluded(PermanentAnalyzerError):
    """A physical page the reader needs was filtered out of the dump or is missing."""


class AddressNotMapped(PermanentAnalyzerError):
    """A kernel virtual address has no translation in the dump's page tables."""


class BadKallsyms(CorruptDump):
    """The kallsyms tables in the dump's memory are unreadable or contradict their format."""


class BadBtf(CorruptDump):
    """BTF data (from a vmlinux or the dump's memory) contradicts its format or its bounds."""


class BadOrc(CorruptDump):
    """ORC unwind tables (from a vmlinux or the dump's memory) contradict their format."""
