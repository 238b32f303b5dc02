"""Kernel memory seen through a symbol pack: relocated symbols, struct offsets, safe reads.

Every read returns None instead of raising when the address is unmapped, excluded from the
dump or garbage, so that walks over inconsistent memory end with partial results instead of
exceptions. Reads are counted and capped per analysis (:data:`MAX_READS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from vmcore.errors import AnalyzerError
from vmcore.symbols import KernelSymbols, SymbolHitLike
from vmcore.x86_64 import START_KERNEL_MAP, KernelMemory

__all__ = ["MAX_READS", "Context"]

MAX_READS = 200_000
_KERNEL_IMAGE_END = 0xFFFFFFFFC0000000


@dataclass
class Context:
    """A dump's memory with its pack. ``offset`` is the KASLR slide in bytes (runtime minus
    link-time address of the kernel image); ``notes`` collect what could not be read."""

    mem: KernelMemory
    pack: KernelSymbols
    offset: int
    notes: list[str] = field(default_factory=list)
    reads: int = 0
    _addr_cache: dict[str, int | None] = field(default_factory=dict, repr=False)

    # -- addresses -------------------------------------------------------------------------
    def link_address(self, name: str) -> int | None:
        """Link-time address of symbol ``name`` (``SymbolTable.address_of``), cached."""
        if name not in self._addr_cache:
            self._addr_cache[name] = self.pack.symbols.address_of(name)
        return self._addr_cache[name]

    def symbol(self, name: str) -> int | None:
        """Runtime address of kernel symbol ``name`` (per-cpu symbols stay offsets)."""
        addr = self.link_address(name)
        if addr is None:
            return None
        return addr + self.offset if addr >= START_KERNEL_MAP else addr

    def in_kernel_image(self, addr: int) -> bool:
        return START_KERNEL_MAP <= addr < _KERNEL_IMAGE_END

    def lookup(self, addr: int) -> SymbolHitLike | None:
        """The vmlinux symbol holding runtime ``addr`` (text only: t/T/w/W)."""
        if not self.in_kernel_image(addr):
            return None
        hit = self.pack.symbols.lookup(addr - self.offset)
        if hit is None or hit.kind not in "tTwW":
            return None
        return hit

    def off(self, struct: str, path: str) -> int | None:
        """Byte offset of ``path`` in ``struct`` from the pack's BTF layouts."""
        return self.pack.member_offset(struct, path)

    def member_size(self, struct: str, member: str) -> int | None:
        layout = self.pack.types.get(struct)
        if layout is None or member not in layout.members:
            return None
        return layout.members[member].size

    # -- reads -----------------------------------------------------------------------------
    def read(self, addr: int, length: int) -> bytes | None:
        """``length`` bytes at runtime virtual ``addr``, or None when unreadable."""
        if addr < 0 or addr + length > 2**64 or length < 0 or length > 1 << 22:
            return None
        self.reads += 1
        if self.reads > MAX_READS:
            if self.reads == MAX_READS + 1:
                self.notes.append(f"memory: more than {MAX_READS} reads, stopped reading")
            return None
        try:
            data = self.mem.read(addr, length)
        except AnalyzerError:
            return None
        return data if len(data) == length else None

    def u64(self, addr: int) -> int | None:
        b = self.read(addr, 8)
        return None if b is None else int.from_bytes(b, "little")

    def u32(self, addr: int) -> int | None:
        b = self.read(addr, 4)
        return None if b is None else int.from_bytes(b, "little")

    def s32(self, addr: int) -> int | None:
        b = self.read(addr, 4)
        return None if b is None else int.from_bytes(b, "little", signed=True)

    def cstr(self, addr: int, limit: int) -> str | None:
        b = self.read(addr, limit)
        if b is None:
            return None
        return b.split(b"\0", 1)[0].decode("utf-8", "replace")

    def list_nodes(self, head: int, limit: int) -> Iterator[int | None]:
        """The nodes of the circular kernel list whose ``list_head`` is at ``head``, in list
        order, at most ``limit`` of them; then ``None`` once if the list is broken (a pointer
        unreadable, a node seen twice, more than ``limit`` nodes)."""
        seen = {head}
        node = self.u64(head)
        while node != head:
            if node is None or node in seen or len(seen) > limit:
                yield None
                return
            seen.add(node)
            yield node
            node = self.u64(node)

    def member_u64(self, base: int, struct: str, path: str) -> int | None:
        o = self.off(struct, path)
        return None if o is None else self.u64(base + o)

    def per_cpu(self, name: str, cpu: int) -> int | None:
        """Runtime address of per-cpu variable ``name`` on ``cpu``."""
        var = self.link_address(name)
        offsets = self.symbol("__per_cpu_offset")
        if var is None or offsets is None:
            return None
        base = self.u64(offsets + 8 * cpu)
        if base is None:
            return None
        return (var + base) & (2**64 - 1)
