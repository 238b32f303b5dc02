"""What every architecture's kernel memory reader shares: one region translated by an offset
(the x86_64 kernel image, the arm64 linear map), everything else by a page-table walk kept in a
small TLB, and reads that cross pages. Subclasses give the region and the walk."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["PAGE_SIZE", "PagedMemory", "PhysReader"]

PAGE_SIZE = 4096
_TLB_SIZE = 4096  # walked pages remembered

# The dump's physical reader: ``read_phys(paddr, length)``.
PhysReader = Callable[[int, int], bytes]


class PagedMemory:
    """Kernel virtual memory over ``read_phys``. Subclasses set ``_read_phys`` and implement
    ``_is_direct``/``_direct_to_phys`` (the offset-translated region) and ``walk``."""

    _read_phys: PhysReader

    def __init__(self) -> None:
        self._tlb: OrderedDict[int, int] = OrderedDict()

    def _is_direct(self, vaddr: int) -> bool:
        raise NotImplementedError

    def _direct_to_phys(self, vaddr: int) -> int:
        raise NotImplementedError

    def walk(self, vaddr: int) -> int:
        raise NotImplementedError

    def to_phys(self, vaddr: int) -> int:
        """Physical address of kernel virtual ``vaddr``."""
        if self._is_direct(vaddr):
            return self._direct_to_phys(vaddr)
        page = vaddr & ~0xFFF
        p = self._tlb.get(page)
        if p is None:
            p = self.walk(page)
            self._tlb[page] = p
            if len(self._tlb) > _TLB_SIZE:
                self._tlb.popitem(last=False)
        return p | (vaddr & 0xFFF)

    def read(self, vaddr: int, length: int) -> bytes:
        """``length`` bytes at kernel virtual ``vaddr``."""
        if self._is_direct(vaddr) and self._is_direct(vaddr + length - 1):
            return self._read_phys(self._direct_to_phys(vaddr), length)
        out = []
        while length > 0:
            n = min(length, PAGE_SIZE - (vaddr & 0xFFF))
            out.append(self._read_phys(self.to_phys(vaddr), n))
            vaddr += n
            length -= n
        return b"".join(out)

    def u64(self, vaddr: int) -> int:
        """The little-endian u64 at ``vaddr``."""
        return int.from_bytes(self.read(vaddr, 8), "little")
