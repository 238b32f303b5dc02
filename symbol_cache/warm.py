"""A pack already in the local disk tier, opened with the pack reader alone.

``crashfleet analyze`` asks here first: a warm pack needs neither the builder (pyelftools),
the sources (debuginfod client) nor the cache's logging and metrics, so none is imported.
The layout is the disk tier's (``symbol_cache.tiers.DiskTier``): ``<packs>/<build-id>.pack``
and, for kernels whose build-id is garbage, ``<packs>/releases/<release>`` naming the build-id
a previous lookup found.
"""

from __future__ import annotations

import re
from pathlib import Path

from symbol_cache.errors import SymbolCacheError
from symbol_cache.identity import normalize_build_id
from symbol_cache.pack import SymbolPack, decode_pack

__all__ = ["cached_pack"]

_MAX_PACK = 1 << 30
_RELEASE = re.compile(r"[A-Za-z0-9._+~-]{1,128}")


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_PACK + 1)
    except OSError:
        return None
    return data if len(data) <= _MAX_PACK else None


def cached_pack(packs_dir: Path, build_id: str | None, release: str | None = None
                ) -> SymbolPack | None:
    """The pack of ``build_id`` (else of ``release`` through its alias) in ``packs_dir``;
    None when absent or unreadable (a corrupt copy is the full cache's to replace)."""
    try:
        if not build_id and release and _RELEASE.fullmatch(release):
            alias = _read(packs_dir / "releases" / release)
            build_id = alias.decode("ascii", "replace").strip() if alias else None
        if not build_id:
            return None
        build_id = normalize_build_id(build_id)
        data = _read(packs_dir / f"{build_id}.pack")
        if data is None:
            return None
        return decode_pack(data, expect_build_id=build_id)
    except SymbolCacheError:
        return None
