"""x86_64 kernel virtual memory over a dump's physical memory.

Kernel image addresses (``__START_KERNEL_map`` .. + ``KERNEL_IMAGE_SIZE``) translate directly:
``paddr = vaddr - __START_KERNEL_map + phys_base``. Everything else (direct map, vmalloc,
modules) is found by walking the page tables from ``init_top_pgt`` (older kernels:
``init_level4_pgt``; else ``swapper_pg_dir``): 4 levels, or 5 when
``NUMBER(pgtable_l5_enabled)`` is 1; 1 GiB pages at the PUD, 2 MiB at the PMD; the SME
encryption bit (``NUMBER(sme_mask)``) is cleared from entries. The direct-map base is
randomized and not exported, so it is never assumed: a walk finds it. A walk has a fixed depth
(at most 5 reads), so corrupt or cyclic tables cannot make it loop.
"""

from __future__ import annotations

import struct

from vmcore.errors import AddressNotMapped, CorruptDump
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.vmem import PagedMemory, PhysReader

__all__ = ["START_KERNEL_MAP", "KernelMemory"]

START_KERNEL_MAP = 0xFFFFFFFF80000000
_DEFAULT_IMAGE_SIZE = 1 << 30
_ENTRY_MASK = 0x000FFFFFFFFFF000
_PRESENT = 1
_PSE = 1 << 7



class KernelMemory(PagedMemory):
    """Reads kernel virtual addresses. ``read_phys(paddr, length)`` is the dump's reader;
    ``phys_base`` the kernel's physical load offset (from VMCOREINFO ``NUMBER(phys_base)``,
    which QEMU's kdump headers get wrong, else the kdump sub-header)."""

    def __init__(self, read_phys: PhysReader, info: VmcoreInfo,
                 header_phys_base: int | None = None):
        self._read_phys = read_phys
        self.info = info
        pb = info.numbers.get("phys_base", header_phys_base)
        if pb is None:
            raise CorruptDump("no phys_base in VMCOREINFO or the dump header")
        self.phys_base = pb & (2**64 - 1)
        self.image_size = info.numbers.get("KERNEL_IMAGE_SIZE", _DEFAULT_IMAGE_SIZE)
        self.sme_mask = info.numbers.get("sme_mask", 0) & (2**64 - 1)
        self.levels = 5 if info.numbers.get("pgtable_l5_enabled", 0) == 1 else 4
        self._entry_mask = _ENTRY_MASK & ~self.sme_mask
        self._pgd: int | None = None
        super().__init__()
        self.walks = 0

    def _top(self) -> int:
        if self._pgd is None:
            for name in ("init_top_pgt", "init_level4_pgt", "swapper_pg_dir"):
                if name in self.info.symbols:
                    self._pgd = self._direct_to_phys(self.info.symbols[name])
                    break
            else:
                raise CorruptDump("VMCOREINFO names no top-level page table "
                                  "(init_top_pgt / swapper_pg_dir)")
        assert self._pgd is not None
        return self._pgd

    def _is_direct(self, vaddr: int) -> bool:
        return START_KERNEL_MAP <= vaddr < START_KERNEL_MAP + self.image_size

    def _direct_to_phys(self, vaddr: int) -> int:
        return (vaddr - START_KERNEL_MAP + self.phys_base) & (2**64 - 1)

    def _entry(self, table: int, index: int, vaddr: int, level: str) -> int:
        (e,) = struct.unpack("<Q", self._read_phys(table + 8 * index, 8))
        if not e & _PRESENT:
            raise AddressNotMapped(f"{level} entry {e:#x} not present", offset=vaddr,
                                   space="virt")
        return e

    def walk(self, vaddr: int) -> int:
        """Physical address of ``vaddr`` by walking the page tables."""
        self.walks += 1
        table = self._top()
        shifts = [48, 39, 30, 21, 12] if self.levels == 5 else [39, 30, 21, 12]
        names = ["PGD", "P4D", "PUD", "PMD", "PTE"][5 - len(shifts):]
        for depth, (shift, name) in enumerate(zip(shifts, names, strict=True)):
            e = self._entry(table, (vaddr >> shift) & 0x1FF, vaddr, name)
            base = e & self._entry_mask
            if name in ("PUD", "PMD") and e & _PSE:
                size = 1 << shift
                return (base & ~(size - 1)) | (vaddr & (size - 1))
            if depth == len(shifts) - 1:
                return base | (vaddr & 0xFFF)
            table = base
        raise AssertionError("unreachable")
