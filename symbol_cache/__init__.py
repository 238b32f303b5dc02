"""symbol_cache: kernel debug symbols by build-id, digested once into shared packs.

Public surface:

- :func:`build_pack`, :class:`SymbolPack`, :func:`encode_pack`, :func:`decode_pack`: the pack.
- :class:`SymbolTable`, :class:`SymbolHit`, :class:`OrcTable`, :class:`StructLayout`: its parts.
- :class:`SymbolCache` (``symbol_cache.cache``) with its tiers and sources
  (``symbol_cache.tiers``, ``symbol_cache.sources``) and :class:`SymbolMetrics`.
- :class:`KernelIdentity`, :func:`is_plausible_build_id`: which kernel a dump came from.
- Errors: :class:`SymbolCacheError`, split into :class:`RetryableSymbolError` and
  :class:`PermanentSymbolError`.
"""

__version__ = "1"

from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): opening a cached pack must not import the
# builder (pyelftools), the sources (debuginfod client) or the cache (structlog, metrics).
_WHERE = {
    "Member": "btf", "StructLayout": "btf", "DEFAULT_STRUCTS": "builder",
    "build_pack": "builder", "KernelIdentity": "identity", "is_plausible_build_id": "identity",
    "OrcEntry": "orc", "OrcTable": "orc", "FORMAT_VERSION": "pack", "PackMeta": "pack",
    "SymbolPack": "pack", "decode_pack": "pack", "encode_pack": "pack", "SymbolHit": "symtab",
    "SymbolTable": "symtab",
    **dict.fromkeys(("BuildIdMismatch", "CorruptPack", "LeaseTimeout", "MalformedInput",
                     "NotFound", "PermanentSymbolError", "ReleaseMismatch",
                     "RetryableSymbolError", "SourceUnavailable", "SymbolCacheError"),
                    "errors"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'symbol_cache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"symbol_cache.{where}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from symbol_cache.btf import Member, StructLayout
    from symbol_cache.builder import DEFAULT_STRUCTS, build_pack
    from symbol_cache.errors import (
        BuildIdMismatch,
        CorruptPack,
        LeaseTimeout,
        MalformedInput,
        NotFound,
        PermanentSymbolError,
        ReleaseMismatch,
        RetryableSymbolError,
        SourceUnavailable,
        SymbolCacheError,
    )
    from symbol_cache.identity import KernelIdentity, is_plausible_build_id
    from symbol_cache.orc import OrcEntry, OrcTable
    from symbol_cache.pack import FORMAT_VERSION, PackMeta, SymbolPack, decode_pack, encode_pack
    from symbol_cache.symtab import SymbolHit, SymbolTable

__all__ = [
    "DEFAULT_STRUCTS",
    "FORMAT_VERSION",
    "BuildIdMismatch",
    "CorruptPack",
    "KernelIdentity",
    "LeaseTimeout",
    "MalformedInput",
    "Member",
    "NotFound",
    "OrcEntry",
    "OrcTable",
    "PackMeta",
    "PermanentSymbolError",
    "ReleaseMismatch",
    "RetryableSymbolError",
    "SourceUnavailable",
    "StructLayout",
    "SymbolCacheError",
    "SymbolHit",
    "SymbolPack",
    "SymbolTable",
    "build_pack",
    "decode_pack",
    "encode_pack",
    "is_plausible_build_id",
]
