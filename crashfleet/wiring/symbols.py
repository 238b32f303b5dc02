"""Build a :class:`SymbolCache` from settings (the one place sources and tiers are wired)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from symbol_cache.cache import SymbolCache
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.pack import SymbolPack
from symbol_cache.sources import DebSource, DebuginfodSource, LocalDirSource, urls_from_env
from symbol_cache.sources.base import Source
from symbol_cache.tiers import DiskTier, MemoryTier, SharedTier

if TYPE_CHECKING:
    from foundation.settings import Settings

__all__ = ["open_cache", "pack_provider"]


def open_cache(settings: Settings, registry: CollectorRegistry | None = None, *,
               env: Mapping[str, str] | None = None) -> SymbolCache:
    """The cache the settings describe; metrics go to ``registry`` (a fresh one if None)."""
    sym = settings.symbols
    env = os.environ if env is None else env
    root = Path(sym.cache_dir)
    metrics = SymbolMetrics(registry if registry is not None else CollectorRegistry())
    sources: list[Source] = []
    for name in sym.sources:
        if name == "debuginfod":
            urls = list(sym.debuginfod_urls) or urls_from_env(env)
            if urls:
                sources.append(DebuginfodSource(
                    urls, root / "downloads", timeout_s=sym.debuginfod_timeout_s,
                    on_bytes=metrics.fetched_bytes.labels("debuginfod").inc))
        elif name == "dir":
            sources.append(LocalDirSource([Path(d) for d in sym.debug_dirs]))
        elif name == "deb":
            if sym.deb_dirs:
                sources.append(DebSource([Path(d) for d in sym.deb_dirs]))
        else:
            from foundation.errors import ConfigError

            raise ConfigError(f"symbols.sources: unknown source {name!r} "
                              "(debuginfod, dir, deb)", key="symbols.sources")
    shared = None
    if sym.shared == "s3":
        from ingest.s3 import S3ObjectStore

        shared = SharedTier(S3ObjectStore.from_settings(settings.s3))
    return SymbolCache(sources=sources, disk=DiskTier(root / "packs", sym.disk_cap_mib << 20),
                       shared=shared, metrics=metrics, memory=MemoryTier(sym.memory_packs),
                       workdir=root / "work", lease_ttl_s=sym.lease_ttl_s,
                       wait_timeout_s=sym.wait_timeout_s, failure_ttl_s=sym.failure_ttl_s)


def pack_provider(cache: SymbolCache) -> Callable[[Any], SymbolPack]:
    """A pack provider for ``vmcore.analyze(symbols=...)``: given a dump's parsed VMCOREINFO
    (anything with ``build_id``, ``osrelease`` and ``kernel_offset``), the kernel's pack from
    ``cache`` — by build-id, or by release when the dump's BUILD-ID is garbage."""
    from symbol_cache import KernelIdentity, is_plausible_build_id

    def get(info: Any) -> SymbolPack:
        bid = info.build_id if info.build_id and is_plausible_build_id(info.build_id) else None
        ident = KernelIdentity(bid, info.osrelease, info.kernel_offset or 0,
                               build_id_garbage=bool(info.build_id) and bid is None)
        return cache.get_for(ident)

    return get
