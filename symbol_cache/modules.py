"""Module packs: symbols of a kernel module's debug ``.ko``, by section.

A ``.ko`` is relocatable: its symbols are offsets in sections the kernel places separately
when loading (``/sys/module/<name>/sections/<section>`` live, ``module->sect_attrs`` in a dump).
A module pack therefore stores each symbol as ``slot << SLOT_SHIFT | offset`` with the slot's
section name and size in ``PackMeta.module_sections``; :func:`module_lookup` resolves a runtime
address given the sections' load addresses.
"""

from __future__ import annotations

from collections.abc import Mapping

from symbol_cache.pack import SymbolPack
from symbol_cache.symtab import SLOT_SHIFT, SymbolHit

__all__ = ["module_lookup"]


def module_lookup(pack: SymbolPack, address: int,
                  section_bases: Mapping[str, int]) -> SymbolHit | None:
    """The symbol of module ``pack`` containing runtime ``address``, where ``section_bases``
    gives the load address of sections by name (``.text`` → 0xffffffffc0400000); the hit's
    ``address`` is the runtime start of the symbol. None outside every known section/symbol."""
    for slot, (name, size) in enumerate(pack.meta.module_sections):
        base = section_bases.get(name)
        if base is None or not base <= address < base + size:
            continue
        offset = address - base
        hit = pack.symbols.lookup(slot << SLOT_SHIFT | offset)
        if hit is None or hit.address >> SLOT_SHIFT != slot:
            return None
        start = hit.address & ((1 << SLOT_SHIFT) - 1)
        span = min(hit.size, size - start)  # the last symbol ends with its section
        if offset - start >= span:
            return None
        return SymbolHit(hit.name, base + start, offset - start, span, hit.kind)
    return None
