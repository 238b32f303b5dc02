"""arm64 symbols from the dump when its kallsyms names functions only.

Debian builds its arm64 kernels without ``CONFIG_KALLSYMS_ALL`` (its x86_64 ones have it:
livepatch depends on it), so their kallsyms lists text symbols only: 6.1.0-56-cloud-arm64 has
44,722 of them and no ``init_task``, per-cpu variable, ``modules`` list or ``__start_BTF``.
The data symbols deep analysis reads are found in other tables the kernel keeps in memory,
each checked against what it must agree with:

- BTF: the first BTF header (magic, version 1, 24-byte header, types first) after kallsyms'
  tables whose sections fit; ``.BTF`` ends read-only data (``include/asm-generic/
  vmlinux.lds.h`` ``RO_DATA``), after kallsyms (in ``.rodata``) and the export tables.
- Exported symbols (``init_task``, ``__per_cpu_offset``, ``nr_cpu_ids``, exported per-cpu
  variables): ``__ksymtab`` and ``__ksymtab_gpl``, arrays of ``struct kernel_symbol`` whose
  three fields are place-relative 32-bit offsets (``CONFIG_HAVE_ARCH_PREL32_RELOCATIONS``,
  arm64 since v4.19), lie between kallsyms' tables and BTF. The entry whose name field points
  at ``"init_task"`` is found, the table grown from it while entries stay well formed, and
  accepted when its function entries are at the addresses kallsyms gives their names.
- Per-cpu variables (``__entry_task``, ``irq_stack_ptr``): their offsets in ``.data..percpu``
  from BTF's ``DATASEC`` (pahole records per-cpu variables), placed by the exported per-cpu
  variables, which must all agree on where the section starts.
- ``_end`` and ``modules``, from ``vmap_area_list`` (VMCOREINFO): the kernel's data segment is
  the vmalloc area holding ``init_task`` (``_end`` is its end less the guard page); a loaded
  module's ``struct module`` lies in a vmalloc area within branch reach of the kernel, whose
  start is one of its regions; the one node of its ``list`` that is no module's is
  ``modules``.

Statics that no table names (``last_unloaded_module``, ``__start___bug_table``,
``linux_banner``) stay unknown; the analysis reads without them and says so.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import NamedTuple, cast

from vmcore.arm64 import Arm64Memory
from vmcore.btf import StructLayout
from vmcore.btf_lazy import lazy_btf_types
from vmcore.deep.context import Context
from vmcore.deep.modules import module_layout
from vmcore.dumpsyms import ANALYSIS_STRUCTS, DumpMeta, DumpSymbols, NoOrc
from vmcore.errors import AnalyzerError
from vmcore.kallsyms import IndexedKallsyms, Kallsyms
from vmcore.pages import Reader
from vmcore.symbols import SymbolHitLike
from vmcore.vmcoreinfo import VmcoreInfo
from vmcore.x86_64 import KernelMemory

__all__ = ["exported_symbols", "find_btf", "functions_only_symbols"]

MAX_RODATA_SCAN = 16 << 20  # bytes searched for BTF after kallsyms' tables (1.5 MiB on 6.1)
MAX_BTF_BYTES = 64 << 20
MAX_AREAS = 1 << 16
MAX_MODULE_SCAN = 64 << 20  # bytes of vmalloc areas searched for struct module
_CHUNK = 64 << 10
# struct btf_header: magic 0xeB9F, version 1, flags 0, hdr_len 24, type_off 0
_BTF_HEADER = re.compile(rb"\x9f\xeb\x01\x00\x18\x00\x00\x00\x00\x00\x00\x00")
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{0,127}")
_KSYM_WORDS = 3  # struct kernel_symbol: value_offset, name_offset, namespace_offset
_CHECKED_EXPORTS = 16  # function exports compared with kallsyms (in-place name lookups)
_MAX_ANCHORS = 16  # copies of the anchor's name tried (the export table has one)
_PERCPU_SECTION = ".data..percpu"
_VM_ALLOC, _VM_NO_GUARD = 0x2, 0x40  # include/linux/vmalloc.h, unchanged since v4.0
_PAGE = 4096
# struct module is ____cacheline_aligned (L1_CACHE_BYTES 64 on arm64); modules are placed
# within 2 GiB of the kernel text (v6.1 RANDOMIZE_MODULE_REGION_FULL, v6.5+ module_init)
_MODULE_ALIGN = 64
_MODULE_REACH = 4 << 30
_KERNEL_VA = 0xFFFF000000000000
_TYPES = (*ANALYSIS_STRUCTS, "vmap_area", "vm_struct")


# -- BTF -------------------------------------------------------------------------------------
def find_btf(data: bytes, base: int) -> tuple[int, int] | None:
    """(address, size in bytes) of the first BTF in ``data`` (bytes at address ``base``):
    a 4-aligned header as pahole writes it whose type and string sections fit."""
    for m in _BTF_HEADER.finditer(data):
        at = base + m.start()
        if at % 4 or m.start() + 32 > len(data):
            continue
        type_len, str_off, str_len = array("I", data[m.start() + 12:m.start() + 24])
        size = 24 + max(type_len, str_off + str_len)
        if type_len % 4 == 0 and str_off >= type_len and 24 < size <= MAX_BTF_BYTES:
            return at, size
    return None


# -- exported symbols ------------------------------------------------------------------------
def exported_symbols(data: bytes, base: int, anchor: str = "init_task") -> dict[str, int]:
    """The export table in ``data`` (bytes at the 4-aligned address ``base``): every
    ``struct kernel_symbol`` (place-relative fields) of the run of well-formed entries
    around the one named ``anchor``, name -> address; {} when there is no such entry."""
    words = array("i", data[:len(data) & ~3])
    want = re.compile(rb"\0" + re.escape(anchor.encode()) + rb"\0")
    targets = {m.start() + 1 for m in islice(want.finditer(data), _MAX_ANCHORS)}
    if not targets:
        return {}
    for i in _pointing_at(words, targets):
        got = _table_around(words, data, base, i - 1)  # i is the entry's name field
        if anchor in got:
            return got
    return {}


def _pointing_at(words: array, targets: set[int]) -> Iterator[int]:
    """Indices of the words that point at one of the bytes ``targets`` as place-relative
    offsets, going back from the last target, in one pass whatever the number of targets:
    the export tables precede ``__ksymtab_strings`` (the linker script's ``RO_DATA``), about
    130 KiB before the name on 6.1, so the search usually stops early."""
    for i in range(min(max(targets) // 4, len(words) - 1), 0, -1):
        if words[i] + 4 * i in targets:
            yield i


def _entry(words: array, data: bytes, base: int, k: int) -> tuple[str, int] | None:
    """(name, address) of the entry at word ``k``, or None unless its name is an identifier
    in ``data`` and its namespace is none or a string there."""
    if not 0 <= k <= len(words) - _KSYM_WORDS:
        return None
    at = 4 * (k + 1) + words[k + 1]  # the name, as an offset into data
    ns = words[k + 2]
    if not 0 <= at < len(data) or (ns and not 0 <= 4 * (k + 2) + ns < len(data)):
        return None
    m = _IDENT.match(data, at)
    if m is None or data[m.end():m.end() + 1] != b"\0":
        return None
    return m.group().decode(), (base + 4 * k + words[k]) & (2**64 - 1)


def _table_around(words: array, data: bytes, base: int, k: int) -> dict[str, int]:
    first = k
    while _entry(words, data, base, first - _KSYM_WORDS) is not None:
        first -= _KSYM_WORDS
    out: dict[str, int] = {}
    while (e := _entry(words, data, base, first)) is not None:
        out.setdefault(*e)
        first += _KSYM_WORDS
    return out


def _exports_agree(exports: Mapping[str, int], ks: Kallsyms | IndexedKallsyms,
                   text: tuple[int, int]) -> bool:
    """Whether function exports (a sample spread over the table) are where kallsyms has
    their names: most of them, allowing a few names kallsyms also has as local symbols."""
    funcs = sorted((n, a) for n, a in exports.items() if text[0] <= a < text[1])
    step = max(1, len(funcs) // _CHECKED_EXPORTS)
    sample = funcs[::step][:_CHECKED_EXPORTS]
    same = sum(1 for n, a in sample if ks.address_of(n) == a)
    return len(sample) >= 8 and same * 10 >= len(sample) * 9


def _percpu_start(exports: Mapping[str, int], offsets: Mapping[str, int]) -> int | None:
    """Where ``.data..percpu`` starts: what every exported per-cpu variable says."""
    votes = Counter(exports[n] - offsets[n] for n in exports.keys() & offsets.keys())
    if not votes:
        return None
    start, n = votes.most_common(1)[0]
    return start if n >= 2 and n == sum(votes.values()) else None


# -- vmalloc areas ---------------------------------------------------------------------------
class _Area(NamedTuple):
    start: int
    end: int  # va_end: the guard page included
    flags: int
    size: int  # vm_struct.size: the guard page included unless VM_NO_GUARD


def _areas(ctx: Context, info: VmcoreInfo) -> Iterator[_Area]:
    """The busy vmalloc areas on ``vmap_area_list`` that have a ``vm_struct``."""
    head = info.symbols.get("vmap_area_list")
    lo = info.offsets.get("vmap_area.list", ctx.off("vmap_area", "list"))
    so = info.offsets.get("vmap_area.va_start", ctx.off("vmap_area", "va_start"))
    eo, vo = ctx.off("vmap_area", "va_end"), ctx.off("vmap_area", "vm")
    fo, zo = ctx.off("vm_struct", "flags"), ctx.off("vm_struct", "size")
    if head is None or None in (lo, so, eo, vo, fo, zo):
        ctx.notes.append("vmalloc: no vmap_area_list or vmap_area/vm_struct layout")
        return
    for node in ctx.list_nodes(head, MAX_AREAS):
        if node is None:
            ctx.notes.append("vmalloc: vmap_area_list broken (unreadable, cyclic or too long)")
            return
        va = node - cast(int, lo)
        start, end, vm = (ctx.u64(va + cast(int, o)) for o in (so, eo, vo))
        if start is None or end is None or not vm:
            continue
        flags, size = ctx.u64(vm + cast(int, fo)), ctx.u64(vm + cast(int, zo))
        if flags is not None and size is not None:
            yield _Area(start, end, flags, size)


def _image_end(areas: list[_Area], init_task: int) -> int | None:
    """``_end``: the end of the kernel's data segment (the area holding ``init_task``)."""
    for a in areas:
        if a.start <= init_task < a.end:
            guard = 0 if a.flags & _VM_NO_GUARD else _PAGE
            return a.start + a.size - guard
    return None


def _modules_head(ctx: Context, areas: list[_Area], image: tuple[int, int]) -> int | None:
    """The ``modules`` list head, from the ``struct module`` of loaded modules found in
    allocated vmalloc areas within branch reach of the kernel; None when there is none."""
    lo, no = ctx.off("module", "list"), ctx.off("module", "name")
    if lo is None or no is None:
        return None
    found: set[int] = set()  # list nodes of the modules found
    budget = MAX_MODULE_SCAN
    for a in areas:
        if not a.flags & _VM_ALLOC or (a.end > image[0] and a.start < image[1]) \
                or abs(a.start - image[0]) > _MODULE_REACH or a.end - a.start > budget:
            continue
        budget -= a.end - a.start
        found.update(_modules_in(ctx, a, lo, no))
    if not found:
        return None
    heads = set()
    for node in ctx.list_nodes(next(iter(found)), len(found) + 1):
        if node is None:
            return None
        if node not in found:
            heads.add(node)
    head = heads.pop() if len(heads) == 1 else None
    return head if head is not None and image[0] <= head < image[1] else None


def _modules_in(ctx: Context, a: _Area, lo: int, no: int) -> Iterator[int]:
    """List nodes of the ``struct module`` in area ``a``: a module name, a list whose
    neighbours point back, and a module region starting at the area's start."""
    for page in range(a.start, a.end, _PAGE):
        raw = ctx.read(page, _PAGE)
        if raw is None:
            continue
        for off in range(0, _PAGE, _MODULE_ALIGN):
            mod = page + off
            name = ctx.read(mod + no, 56) if off + no + 56 > _PAGE else raw[off + no:off + no + 56]
            if name is None or not _is_module_name(name):
                continue
            node = mod + lo
            nxt, prv = ctx.u64(node), ctx.u64(node + 8)
            if nxt is None or prv is None or nxt < _KERNEL_VA or prv < _KERNEL_VA or \
                    ctx.u64(nxt + 8) != node or ctx.u64(prv) != node:
                continue
            lay = module_layout(ctx, mod)
            if lay is not None and any(s == a.start for s, _e in lay[2]):
                yield node


def _is_module_name(raw: bytes) -> bool:
    name, nul, rest = raw.partition(b"\0")
    return bool(nul) and _IDENT.fullmatch(name) is not None and not rest.strip(b"\0")


# -- the source ------------------------------------------------------------------------------
class TextAndData:
    """kallsyms (functions) with the data symbols found elsewhere in the dump; implements
    ``vmcore.symbols.SymbolLookup`` at runtime addresses."""

    def __init__(self, text: Kallsyms | IndexedKallsyms, data: Mapping[str, int]):
        self.text, self.data = text, dict(data)

    def address_of(self, name: str) -> int | None:
        addr = self.text.address_of(name)
        return self.data.get(name) if addr is None else addr

    def lookup(self, address: int) -> SymbolHitLike | None:
        return self.text.lookup(address)


def _rodata(read: Reader, start: int, notes: list[str]) -> tuple[bytes, tuple[int, int] | None]:
    """Read-only data from ``start`` up to the BTF it ends with, and where that BTF is."""
    buf = bytearray()
    while len(buf) < MAX_RODATA_SCAN:
        try:
            buf += read(start + len(buf), _CHUNK)
        except AnalyzerError as exc:
            notes.append(f"btf: read-only data unreadable after kallsyms ({exc.what})")
            return bytes(buf), None
        seen = max(0, len(buf) - _CHUNK - 32)
        got = find_btf(bytes(buf[seen:]), start + seen)
        if got is not None:
            return bytes(buf[:got[0] - start]), got
    notes.append(f"btf: no BTF header within {MAX_RODATA_SCAN} bytes after kallsyms")
    return bytes(buf), None


def _types(read: Reader, btf: tuple[int, int] | None, notes: list[str]
           ) -> tuple[Mapping[str, StructLayout], dict[str, int]]:
    """The analysis structs and the per-cpu offsets from the BTF at ``btf``."""
    if btf is None:
        return {}, {}
    try:
        at = btf[0]
        types = lazy_btf_types(lambda off, n: read(at + off, n), btf[1], _TYPES)
        return types, types.datasec(_PERCPU_SECTION)
    except AnalyzerError as exc:
        notes.append(f"btf: {exc}")
        return {}, {}


def functions_only_symbols(mem: Arm64Memory, info: VmcoreInfo, ks: Kallsyms | IndexedKallsyms
                           ) -> DumpSymbols:
    """The dump's symbols for a kernel whose kallsyms (``ks``, runtime addresses) has no
    data symbols; ``mem`` reads kernel memory (``read(vaddr, length)``). What cannot be
    found becomes a note."""
    read = mem.read
    notes: list[str] = []
    syms = dict(info.symbols)
    stext, etext = ks.address_of("_stext"), ks.address_of("_etext")
    start = max(v for k, v in syms.items() if k.startswith("kallsyms_")) + 512
    window, btf = _rodata(read, start & ~3, notes)
    types, percpu = _types(read, btf, notes)
    data: dict[str, int] = {}
    if btf is not None:
        data.update(__start_BTF=btf[0], __stop_BTF=btf[0] + btf[1])
    exports = exported_symbols(window, start & ~3)
    if stext is None or etext is None or not _exports_agree(exports, ks, (stext, etext)):
        notes.append("exports: no export table agreeing with kallsyms after its tables")
        exports = {}
    data.update(exports)  # behind kallsyms (TextAndData): functions are named by it first
    pcpu = _percpu_start(exports, percpu)
    if pcpu is None:
        notes.append("percpu: exported per-cpu variables do not place .data..percpu")
    else:
        data.update((n, pcpu + o) for n, o in percpu.items() if n not in data)
    notes.append("last_unloaded_module, __start___bug_table: in no table in memory (kallsyms "
                 "of functions only: no CONFIG_KALLSYMS_ALL)")
    meta = DumpMeta(info.osrelease, None)
    build_id = info.build_id or ""
    draft = DumpSymbols(build_id, meta, TextAndData(ks, data), types, NoOrc())
    data.update(_from_vmalloc(Context(cast(KernelMemory, mem), draft, 0), info, stext,
                              data.get("init_task"), notes))
    return DumpSymbols(build_id, meta, TextAndData(ks, data), types, NoOrc(),
                       tuple(notes))


def _from_vmalloc(ctx: Context, info: VmcoreInfo, stext: int | None, init_task: int | None,
                  notes: list[str]) -> dict[str, int]:
    """``_end`` and ``modules`` from the vmalloc areas."""
    if stext is None or init_task is None:
        return {}
    areas = list(_areas(ctx, info))
    out: dict[str, int] = {}
    end = _image_end(areas, init_task)
    if end is None:
        notes.append("vmalloc: no area holds init_task (the kernel's data segment)")
        return out
    out["_end"] = end
    head = _modules_head(ctx, areas, (stext, end))
    if head is None:
        notes.append("modules: no struct module in the vmalloc areas near the kernel, so no "
                     "modules list (none loaded?)")
    else:
        out["modules"] = head
    notes.extend(ctx.notes)
    return out
