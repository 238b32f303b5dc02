"""Digest a vmlinux into a :class:`SymbolPack`: symbols, ORC, struct layouts from BTF.

Never parses DWARF as a whole: the symbol table, ``.BTF`` and the ORC sections are each read
once as bytes. Costs for a Debian 6.1 vmlinux (590 MB): a few seconds, pack about 1% of it.
"""

from __future__ import annotations

import time
from pathlib import Path

from symbol_cache import __version__
from symbol_cache._elf import ElfImage, RawSymbol
from symbol_cache.btf import StructLayout, parse_btf_structs
from symbol_cache.errors import BuildIdMismatch, MalformedInput
from symbol_cache.identity import release_from_banner
from symbol_cache.lines import LineTable, line_index
from symbol_cache.orc import OrcTable
from symbol_cache.pack import PackMeta, SymbolPack
from symbol_cache.symtab import SymbolTable

__all__ = ["DEFAULT_STRUCTS", "build_pack"]

# Types the analyzer reads. Several exist only in some kernels (pcpu_hot since v6.2,
# module_memory since v6.4 replacing module_layout); absent ones are simply not in the pack.
DEFAULT_STRUCTS: tuple[str, ...] = (
    "task_struct", "thread_struct", "thread_info", "list_head", "hlist_head", "hlist_node",
    "module", "module_layout", "module_memory", "mod_kallsyms", "mm_struct", "pt_regs",
    "inactive_task_frame", "fork_frame", "pcpu_hot", "pid", "upid", "signal_struct",
    "nsproxy", "uts_namespace", "new_utsname", "printk_ringbuffer", "prb_desc_ring",
    "prb_data_ring", "prb_desc", "printk_info", "prb_data_blk_lpos", "latched_seq",
    "kernel_symbol", "rq", "vm_area_struct", "cred", "kref", "refcount_struct", "atomic_t",
    "kobject", "callback_head", "rb_node", "rb_root", "timer_list", "work_struct",
    "worker", "kthread", "irq_stack", "tss_struct", "x86_hw_tss", "cpuinfo_x86",
)
_MAX_BANNER = 512
_SHF_ALLOC = 0x2


def _banner(img: ElfImage, symbols: SymbolTable) -> str | None:
    addr = symbols.address_of("linux_banner")
    if addr is None:
        return None
    raw = img.read_at_address(addr, _MAX_BANNER)
    if raw is None:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip() or None


def build_pack(vmlinux: Path, *, expect_build_id: str | None = None, source: str = "",
               structs: tuple[str, ...] = DEFAULT_STRUCTS) -> SymbolPack:
    """Build the pack of ``vmlinux`` (or of a module's debug ``.ko``). Raises
    :class:`BuildIdMismatch` when its build-id is not ``expect_build_id`` (the file is then
    never used) and :class:`MalformedInput` when it is not a usable kernel image."""
    with ElfImage(vmlinux) as img:
        build_id = img.build_id()
        if build_id is None:
            raise MalformedInput(f"{vmlinux}: no GNU build-id note", path=str(vmlinux))
        if expect_build_id is not None and build_id != expect_build_id:
            raise BuildIdMismatch(expect_build_id, build_id, path=str(vmlinux))
        raw_symbols = list(img.symbols())  # first: a stripped file fails with a clear error
        if img.elf.header["e_type"] == "ET_REL":
            return _module_pack(img, vmlinux, build_id, raw_symbols, source)
        symbols = SymbolTable.from_elf(raw_symbols, img.strtab(), img.section_flags())
        banner = _banner(img, symbols)
        ip_sec = img.section_bytes(".orc_unwind_ip")
        unwind = img.section_bytes(".orc_unwind")
        if ip_sec is not None and unwind is not None:
            ip_addr = img.section_addr(".orc_unwind_ip") or 0
            orc = OrcTable.from_sections(ip_sec, ip_addr, unwind,
                                         img.section_bytes(".orc_header"))
        else:
            orc = OrcTable.from_sections(b"", 0, b"", None)  # a kernel without ORC
        lines = _lines(img)
        btf = img.section_bytes(".BTF")
        types: dict[str, StructLayout] = parse_btf_structs(btf, structs) if btf else {}
        meta = PackMeta(
            build_id=build_id,
            release=release_from_banner(banner) if banner else None,
            banner=banner,
            source=source,
            vmlinux_size=vmlinux.stat().st_size,
            created=round(time.time(), 3),
            producer=f"crashfleet-symbol-cache {__version__}",
            orc_base=orc.base,
            names_bytes=len(symbols.names),
            orc_count=len(orc),
        )
    return SymbolPack(meta, symbols, orc, types, lines=lines)


def _lines(img: ElfImage) -> LineTable | None:
    """The line index, or None for a vmlinux without aranges/line tables (then no file:line)."""
    aranges = img.section_bytes(".debug_aranges")
    line = img.section_bytes(".debug_line")
    abbrev = img.section_bytes(".debug_abbrev")
    if not aranges or not line or not abbrev:
        return None
    index = line_index(aranges, lambda off: img.read_in_section(".debug_info", off, 256),
                       abbrev)
    return LineTable.build(index, line, img.section_bytes(".debug_line_str") or b"")


def _module_pack(img: ElfImage, path: Path, build_id: str, raw_symbols: list[RawSymbol],
                 source: str) -> SymbolPack:
    """A module's pack: symbols by section (no ORC, types or lines: a module's ORC is read from
    the dump's memory, its BTF is split BTF over the vmlinux's)."""
    sections = img.section_flags()
    used = sorted({shndx for _n, _i, _o, shndx, _v, _s in raw_symbols
                   if 0 < shndx < len(sections) and sections[shndx][0] & _SHF_ALLOC})
    slot_of = {shndx: slot for slot, shndx in enumerate(used)}
    symbols = SymbolTable.from_elf(raw_symbols, img.strtab(), sections, slot_of)
    modinfo = img.section_bytes(".modinfo") or b""
    name = next((f[5:].decode("utf-8", "replace") for f in modinfo.split(b"\0")
                 if f.startswith(b"name=")), None)
    meta = PackMeta(
        build_id=build_id, release=None, banner=None, source=source,
        vmlinux_size=path.stat().st_size, created=round(time.time(), 3),
        producer=f"crashfleet-symbol-cache {__version__}", orc_base=0, kind="module",
        module_name=name,
        module_sections=tuple((sections[i][2], sections[i][4]) for i in used),
        names_bytes=len(symbols.names),
    )
    return SymbolPack(meta, symbols, OrcTable.from_sections(b"", 0, b"", None), {})
