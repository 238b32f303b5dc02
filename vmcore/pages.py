"""Kernel memory read in place, a page at a time, for tables looked up by binary search.

The dump's own symbols (kallsyms, ORC) are searched where they lie instead of being copied and
decoded whole: a lookup touches a few dozen 4 KiB pages of tables that are megabytes long.
:class:`PageReader` keeps the pages it has read (at most :data:`MAX_PAGES`, oldest dropped) so
the probes of successive searches, which share their first steps, cost one read each.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from vmcore.errors import AnalyzerError, RetryableAnalyzerError

__all__ = ["MAX_PAGES", "PageReader", "Reader", "reraise_retryable"]

# Reads ``length`` bytes of kernel virtual memory (raises AnalyzerError when unreadable).
Reader = Callable[[int, int], bytes]
MAX_PAGES = 4096  # 16 MiB
_PAGE = 4096


class PageReader:
    """``read``/``u8``/``u32``/``s32`` of kernel virtual memory through a page cache. Raises
    :class:`~vmcore.errors.AnalyzerError` as the underlying reader does."""

    def __init__(self, read: Reader, max_pages: int = MAX_PAGES):
        self._read = read
        self._pages: OrderedDict[int, bytes] = OrderedDict()
        self._max = max_pages
        self.page_reads = 0

    def _page(self, base: int) -> bytes:
        page = self._pages.get(base)
        if page is None:
            self.page_reads += 1
            page = self._read(base, _PAGE)
            if len(page) != _PAGE:
                raise AnalyzerError(f"short read of the page at {base:#x}")
            self._pages[base] = page
            if len(self._pages) > self._max:
                self._pages.popitem(last=False)
        return page

    def read(self, addr: int, length: int) -> bytes:
        """``length`` bytes at ``addr`` (may span pages)."""
        out = []
        while length > 0:
            base = addr & ~(_PAGE - 1)
            off = addr - base
            n = min(length, _PAGE - off)
            out.append(self._page(base)[off:off + n])
            addr += n
            length -= n
        return b"".join(out)

    def u8(self, addr: int) -> int:
        base = addr & ~(_PAGE - 1)
        return self._page(base)[addr - base]

    def u32(self, addr: int) -> int:
        base = addr & ~(_PAGE - 1)
        if addr - base <= _PAGE - 4:
            off = addr - base
            return int.from_bytes(self._page(base)[off:off + 4], "little")
        return int.from_bytes(self.read(addr, 4), "little")

    def s32(self, addr: int) -> int:
        v = self.u32(addr)
        return v - (1 << 32) if v & 0x80000000 else v


def reraise_retryable(exc: AnalyzerError) -> None:
    """Lookups in place turn an unreadable table into "not found"; a source that failed for
    now (S3 down) must still reach the caller, whose retry may succeed."""
    if isinstance(exc, RetryableAnalyzerError):
        raise exc
