"""arm64 kernel virtual memory over a dump's physical memory, and the arm64 register note.

Layout from VMCOREINFO alone (``arch/arm64/kernel/vmcore_info.c``): ``NUMBER(VA_BITS)``,
``NUMBER(kimage_voffset)``, ``NUMBER(PHYS_OFFSET)``, ``NUMBER(TCR_EL1_T1SZ)``,
``NUMBER(KERNELPACMASK)``, ``KERNELOFFSET``, ``SYMBOL(swapper_pg_dir)``, ``PAGESIZE``.

- The linear map translates directly: ``paddr = (vaddr & ~PAGE_OFFSET) + PHYS_OFFSET``
  (``__lm_to_phys``). Since 5.4 (commit 14c127c957c1, "flip kernel VA space") the linear map
  is the lower half of the kernel VA range, ``[-(1 << VA_BITS), -(1 << (VA_BITS - 1)))``;
  before, the upper half. Which one is told by where ``_stext`` lies (the image is in the
  other half), never by the version.
- ``swapper_pg_dir`` is in the kernel image: ``paddr = vaddr - kimage_voffset``.
- Everything else (the image, vmalloc, modules) by walking ``swapper_pg_dir``: 4 KiB granule,
  48-bit VA, 4 levels of 9 bits from bit 39; bit 0 valid, bit 1 table (levels 0-2) or page
  (level 3), a block when clear at levels 1 (1 GiB) and 2 (2 MiB); output address bits
  [47:12]. A walk is at most 5 reads, so corrupt tables cannot make it loop.
- 52-bit VA with 4 KiB pages (FEAT_LPA2, ``CONFIG_ARM64_VA_BITS_52`` running with
  ``TCR_EL1_T1SZ`` 12, Debian 6.12 on a CPU with LPA2): one more level on top (level -1, 16
  entries from bit 48: ``PGDIR_SHIFT`` 48, ``PTRS_PER_PGD`` 16), and descriptors carry output
  address bits [49:12] in place and [51:50] in bits [9:8] (where the shareability field was).

Refused with :class:`~vmcore.errors.UnsupportedDump` naming the layout: 16 KiB and 64 KiB
pages, VA sizes other than 48 and 52 bits (39-bit, 42-bit), and a TCR_EL1.T1SZ that disagrees
with VA_BITS (a 52-bit kernel running with 48-bit VAs on a CPU without LPA2; its VMCOREINFO
shifts ``PHYS_OFFSET`` too). makedumpfile 1.7.6 refuses both 52-bit layouts.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmcore.errors import AddressNotMapped, CorruptDump, UnsupportedDump
from vmcore.notes import NT_PRSTATUS, Note
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.vmem import PAGE_SIZE, PagedMemory, PhysReader

__all__ = ["ARM64_REG_NAMES", "Arm64Layout", "Arm64Memory", "arm64_layout", "is_arm64_info",
           "parse_prstatus_arm64"]

_MASK64 = 2**64 - 1
_OA_MASK = 0x0000FFFFFFFFF000  # output address bits [47:12], 4 KiB granule, 48-bit PA
_OA_MASK_LPA2 = 0x0003FFFFFFFFF000  # bits [49:12]; [51:50] are descriptor bits [9:8]
_VALID = 1
_TABLE = 2



def is_arm64_info(info: VmcoreInfo) -> bool:
    """Whether VMCOREINFO describes an arm64 kernel (keys only arm64 exports)."""
    return "kimage_voffset" in info.numbers or "TCR_EL1_T1SZ" in info.numbers


class Arm64Layout(NamedTuple):
    """The kernel's virtual layout. ``va_bits``; ``page_offset`` start of the linear map and
    ``page_end`` its end; ``phys_offset`` (memstart_addr); ``kimage_voffset`` image
    virtual-to-physical offset; ``pac_mask`` the pointer-authentication bits of kernel
    addresses (0 without pointer authentication); ``lpa2`` the 52-bit (LPA2) tables."""

    va_bits: int
    page_offset: int
    page_end: int
    phys_offset: int
    kimage_voffset: int
    pac_mask: int
    lpa2: bool = False

    def strip_pac(self, addr: int) -> int:
        """A code address with its pointer-authentication code removed (kernel addresses get
        the PAC bits set, user ones cleared, as the kernel's ``ptrauth_strip_insn_pac``)."""
        if not self.pac_mask:
            return addr & _MASK64
        if addr >> 55 & 1:
            return (addr | self.pac_mask) & _MASK64
        return addr & ~self.pac_mask & _MASK64


def _need_number(info: VmcoreInfo, name: str) -> int:
    if name not in info.numbers:
        raise CorruptDump(f"arm64 VMCOREINFO has no NUMBER({name})")
    return info.numbers[name] & _MASK64


def arm64_layout(info: VmcoreInfo) -> Arm64Layout:
    """The layout from VMCOREINFO; :class:`UnsupportedDump` for layouts not read here."""
    page = info.page_size or PAGE_SIZE
    if page != PAGE_SIZE:
        raise UnsupportedDump(f"arm64 with {page // 1024} KiB pages (only 4 KiB pages are read)")
    va_bits = _need_number(info, "VA_BITS")
    if va_bits not in (48, 52):
        raise UnsupportedDump(f"arm64 {va_bits}-bit VA is not read (48- and 52-bit only)")
    t1sz = info.numbers.get("TCR_EL1_T1SZ")
    if va_bits == 52 and t1sz is None:
        raise UnsupportedDump("arm64 52-bit VA without TCR_EL1_T1SZ (VA size in use unknown)")
    if t1sz is not None and 64 - t1sz != va_bits:
        raise UnsupportedDump(f"arm64 TCR_EL1_T1SZ={t1sz} ({64 - t1sz}-bit VA in use) with "
                              f"VA_BITS={va_bits}")
    stext = info.symbols.get("_stext")
    if stext is None:
        raise CorruptDump("arm64 VMCOREINFO has no SYMBOL(_stext)")
    low, high = (-(1 << va_bits)) & _MASK64, (-(1 << (va_bits - 1))) & _MASK64
    if stext >= high:  # 5.4+: the image is in the upper half, the linear map the lower one
        start, end = low, high
    else:  # before 5.4: the image in the lower half, the linear map above it
        start, end = high, 1 << 64
    return Arm64Layout(va_bits, start, end, _need_number(info, "PHYS_OFFSET"),
                       _need_number(info, "kimage_voffset"),
                       info.numbers.get("KERNELPACMASK", 0) & _MASK64, va_bits == 52)


class Arm64Memory(PagedMemory):
    """Reads arm64 kernel virtual addresses (the same interface as
    :class:`vmcore.x86_64.KernelMemory`). ``read_phys(paddr, length)`` is the dump's reader."""

    def __init__(self, read_phys: PhysReader, info: VmcoreInfo):
        self._read_phys = read_phys
        self.info = info
        self.layout = arm64_layout(info)
        self._pgd: int | None = None
        super().__init__()
        self.walks = 0

    def _top(self) -> int:
        if self._pgd is None:
            pgd = self.info.symbol("swapper_pg_dir")
            self._pgd = (pgd - self.layout.kimage_voffset) & _MASK64
        return self._pgd

    def _is_direct(self, vaddr: int) -> bool:
        return self.layout.page_offset <= vaddr < self.layout.page_end

    def _direct_to_phys(self, vaddr: int) -> int:
        return ((vaddr & ~self.layout.page_offset) + self.layout.phys_offset) & _MASK64

    def walk(self, vaddr: int) -> int:
        """Physical address of ``vaddr`` by walking ``swapper_pg_dir``."""
        self.walks += 1
        if vaddr >> self.layout.va_bits != _MASK64 >> self.layout.va_bits:
            raise AddressNotMapped("not a kernel (TTBR1) address", offset=vaddr, space="virt")
        table = self._top()
        lpa2 = self.layout.lpa2
        shifts = (48, 39, 30, 21, 12) if lpa2 else (39, 30, 21, 12)
        for i, shift in enumerate(shifts):
            level = 3 - (len(shifts) - 1 - i)  # -1 (LPA2 only), 0, 1, 2, 3
            index = (vaddr >> shift) & (0xF if shift == 48 else 0x1FF)
            (e,) = struct.unpack("<Q", self._read_phys(table + 8 * index, 8))
            if not e & _VALID:
                raise AddressNotMapped(f"level {level} entry {e:#x} not valid", offset=vaddr,
                                       space="virt")
            base = (e & _OA_MASK_LPA2) | (e >> 8 & 3) << 50 if lpa2 else e & _OA_MASK
            if level == 3:
                if not e & _TABLE:
                    raise AddressNotMapped(f"level 3 entry {e:#x} reserved", offset=vaddr,
                                           space="virt")
                return base | (vaddr & 0xFFF)
            if not e & _TABLE:
                if level <= 0:
                    raise AddressNotMapped(f"level {level} block entry {e:#x}", offset=vaddr,
                                           space="virt")
                size = 1 << shift
                return (base & ~(size - 1)) | (vaddr & (size - 1))
            table = base
        raise AssertionError("unreachable")


# arm64 elf_prstatus: the generic 64-bit header (pr_pid at 32), then pr_reg = user_pt_regs
# (arch/arm64/include/uapi/asm/ptrace.h): x0-x30, sp, pc, pstate.
ARM64_REG_NAMES = (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate")
_PR_PID = 32
_PR_REG = 112


def parse_prstatus_arm64(notes: list[Note]) -> list[tuple[int, dict[str, int]]]:
    """(pid, registers) of each arm64 NT_PRSTATUS note in order; short ones raise
    :class:`CorruptDump`."""
    out = []
    need = _PR_REG + 8 * len(ARM64_REG_NAMES)
    for n in notes:
        if n.name != "CORE" or n.type != NT_PRSTATUS:
            continue
        if len(n.desc) < need:
            raise CorruptDump(f"NT_PRSTATUS of {len(n.desc)} bytes, arm64 needs {need}",
                              offset=n.offset)
        (pid,) = struct.unpack_from("<I", n.desc, _PR_PID)
        values = struct.unpack_from(f"<{len(ARM64_REG_NAMES)}Q", n.desc, _PR_REG)
        out.append((pid, dict(zip(ARM64_REG_NAMES, values, strict=True))))
    return out
