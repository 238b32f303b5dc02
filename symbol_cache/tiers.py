"""Pack storage tiers: in-process, local disk (LRU under a byte cap), shared object store.

Tiers store encoded packs by build-id and never interpret them; the cache decodes and, on
:class:`~symbol_cache.errors.CorruptPack`, drops the copy and rebuilds.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from ingest.objectstore import ObjectStore
from symbol_cache._locks import exclusive_lock
from symbol_cache.identity import normalize_build_id
from symbol_cache.pack import SymbolPack

__all__ = ["DiskTier", "MemoryTier", "SharedTier"]

_MAX_PACK = 1 << 30


class MemoryTier:
    """Decoded packs of this process, least recently used dropped beyond ``max_packs``."""

    def __init__(self, max_packs: int = 8):
        self.max_packs = max_packs
        self._packs: OrderedDict[str, SymbolPack] = OrderedDict()

    def get(self, build_id: str) -> SymbolPack | None:
        pack = self._packs.get(build_id)
        if pack is not None:
            self._packs.move_to_end(build_id)
        return pack

    def put(self, pack: SymbolPack) -> None:
        self._packs[pack.build_id] = pack
        self._packs.move_to_end(pack.build_id)
        while len(self._packs) > self.max_packs:
            self._packs.popitem(last=False)

    def drop(self, build_id: str) -> None:
        self._packs.pop(build_id, None)


class DiskTier:
    """``<root>/<build-id>.pack`` files, total at most ``cap_bytes``.

    Writes go to a temporary file renamed into place, so a pack is complete or absent. Reads
    refresh the file's mtime; inserting evicts the least recently used packs first, under an
    exclusive ``flock`` on ``<root>/.lock`` so concurrent processes never overshoot the cap.
    """

    def __init__(self, root: Path, cap_bytes: int):
        self.root = Path(root)
        self.cap_bytes = cap_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, build_id: str) -> Path:
        return self.root / f"{normalize_build_id(build_id)}.pack"

    def get(self, build_id: str) -> bytes | None:
        path = self.path(build_id)
        try:
            with path.open("rb") as fh:
                data = fh.read(_MAX_PACK + 1)
            os.utime(path)
        except FileNotFoundError:
            return None
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with exclusive_lock(self.root / ".lock"):
            yield

    def entries(self) -> list[tuple[str, int, float]]:
        """(build-id, bytes, last use as Unix seconds) of every pack, oldest first."""
        out = []
        for p in self.root.glob("*.pack"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((p.stem, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: e[2])

    def total_bytes(self) -> int:
        return sum(size for _bid, size, _t in self.entries())

    def put(self, build_id: str, data: bytes) -> bool:
        """Store a pack; False (nothing stored) when it alone exceeds the cap."""
        if len(data) > self.cap_bytes:
            return False
        dest = self.path(build_id)
        with self._locked():
            self._evict(self.cap_bytes - len(data), keep=dest.stem)
            tmp = self.root / f".{dest.stem}.{uuid.uuid4().hex}.tmp"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def _evict(self, budget: int, keep: str = "") -> None:
        entries = [e for e in self.entries() if e[0] != keep]
        total = sum(size for _b, size, _t in entries)
        for bid, size, _t in entries:
            if total <= budget:
                break
            (self.root / f"{bid}.pack").unlink(missing_ok=True)
            total -= size

    def gc(self, cap_bytes: int | None = None) -> None:
        """Evict down to ``cap_bytes`` (default: the tier's cap)."""
        with self._locked():
            self._evict(self.cap_bytes if cap_bytes is None else cap_bytes)

    def drop(self, build_id: str) -> None:
        self.path(build_id).unlink(missing_ok=True)


class SharedTier:
    """Packs at ``packs/<build-id>`` in an object store shared by all analyzers."""

    def __init__(self, store: ObjectStore, prefix: str = "packs/"):
        self.store = store
        self.prefix = prefix

    def key(self, build_id: str) -> str:
        return self.prefix + normalize_build_id(build_id)

    def get(self, build_id: str) -> bytes | None:
        info = self.store.head(self.key(build_id))
        if info is None:
            return None
        if info.size > _MAX_PACK:
            return None
        return self.store.get_range(self.key(build_id), 0, info.size)

    def put(self, build_id: str, data: bytes, *, replace: bool = False) -> None:
        """Publish a pack; an existing one (same content by construction) is kept unless
        ``replace`` (used to overwrite a corrupt copy)."""
        if replace:
            self.store.put(self.key(build_id), data, {"format": "1"})
        else:
            self.store.put_if_absent(self.key(build_id), data, {"format": "1"})

    def drop(self, build_id: str) -> None:
        self.store.delete(self.key(build_id))

    def list(self) -> list[tuple[str, int]]:
        return [(o.key[len(self.prefix):], o.size) for o in self.store.list_objects(self.prefix)]
