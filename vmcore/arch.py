"""Which architecture a dump is from, and the kernel-memory reader for it.

Feature detection, in order of authority: the ELF ``e_machine`` of an ELF vmcore; the kdump
header's ``utsname.machine`` when it names one (QEMU writes ``Unknown``); VMCOREINFO keys only
one architecture exports (arm64: ``NUMBER(kimage_voffset)``, ``NUMBER(TCR_EL1_T1SZ)``). A dump
that says nothing is x86_64, the decoder's first architecture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import KernelMemory

if TYPE_CHECKING:
    from vmcore.formats import Dump

__all__ = ["ARCHES", "VirtualMemory", "dump_arch", "kernel_memory"]

ARCHES = ("x86_64", "arm64")
_MACHINES = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class VirtualMemory(Protocol):
    """Kernel virtual memory of a dump (:class:`~vmcore.x86_64.KernelMemory`,
    :class:`~vmcore.arm64.Arm64Memory`)."""

    info: VmcoreInfo

    def to_phys(self, vaddr: int) -> int: ...

    def read(self, vaddr: int, length: int) -> bytes: ...

    def u64(self, vaddr: int) -> int: ...


def dump_arch(dump: Dump, info: VmcoreInfo | None) -> str:
    """``x86_64`` or ``arm64``."""
    machine = getattr(dump.reader, "machine", None)
    if machine is None and dump.kdump_header is not None:
        machine = dump.kdump_header.utsname.get("machine")
    if machine in _MACHINES:
        return _MACHINES[machine]
    if info is not None:
        from vmcore.arm64 import is_arm64_info  # only for dumps that do not say

        if is_arm64_info(info):
            return "arm64"
    return "x86_64"


def kernel_memory(dump: Dump, info: VmcoreInfo) -> VirtualMemory:
    """The kernel-memory reader for the dump's architecture (raises
    :class:`~vmcore.errors.UnsupportedDump` for an arm64 layout not read)."""
    if dump_arch(dump, info) == "arm64":
        from vmcore.arm64 import Arm64Memory  # imported by arm64 dumps only

        return Arm64Memory(dump.read_phys, info)
    hdr_pb = dump.kdump_header.phys_base if dump.kdump_header else None
    return KernelMemory(dump.read_phys, info, hdr_pb)
