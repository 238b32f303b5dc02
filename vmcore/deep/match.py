"""Does a symbol pack belong to a dump? Build-id first, else release plus the banner in memory.

VMCOREINFO's ``BUILD-ID`` is authoritative when plausible; some stable kernels write zeros
there (see ``symbol_cache.identity``), and then the pack is accepted only if its release equals
``OSRELEASE`` and the ``linux_banner`` text read from the dump's memory (at the pack's address
plus the KASLR slide) equals the pack's banner.
"""

from __future__ import annotations

from vmcore.errors import AnalyzerError
from vmcore.symbols import KernelSymbols, is_plausible_build_id
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import KernelMemory

__all__ = ["PackMismatch", "kaslr_offset", "match_pack"]

_BANNER_MAX = 512


class PackMismatch(AnalyzerError):
    """The symbol pack is not the dump's kernel."""


def kaslr_offset(info: VmcoreInfo) -> int:
    """The KASLR slide in bytes (VMCOREINFO ``KERNELOFFSET``; 0 when absent)."""
    return info.kernel_offset or 0


def match_pack(info: VmcoreInfo, pack: KernelSymbols, mem: KernelMemory) -> str:
    """How ``pack`` was matched (``build-id`` or ``release+banner``); raises
    :class:`PackMismatch` when it is another kernel's."""
    bid = (info.build_id or "").lower()
    if bid and is_plausible_build_id(bid):
        if pack.build_id.lower().startswith(bid) or bid.startswith(pack.build_id.lower()):
            return "build-id"
        raise PackMismatch(f"pack {pack.build_id} is not the dump's build-id {bid}")
    if info.osrelease is None or pack.meta.release != info.osrelease:
        raise PackMismatch(f"pack release {pack.meta.release!r} is not the dump's "
                           f"{info.osrelease!r}")
    addr = pack.symbols.address_of("linux_banner")
    if addr is None or not pack.meta.banner:
        raise PackMismatch("no linux_banner to compare")
    try:
        raw = mem.read(addr + kaslr_offset(info), _BANNER_MAX)
    except AnalyzerError as exc:
        raise PackMismatch(f"linux_banner unreadable: {exc}") from exc
    banner = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    if banner != pack.meta.banner.strip():
        raise PackMismatch("linux_banner in memory differs from the pack's")
    return "release+banner"
