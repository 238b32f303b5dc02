"""Local debug-info directories: Debian, Fedora and ``.build-id`` layouts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from symbol_cache._elf import read_build_id
from symbol_cache.errors import MalformedInput
from symbol_cache.sources.base import Wanted

__all__ = ["LocalDirSource"]

# Scanning more candidates than this per root means the root is not a debug-info tree.
_MAX_CANDIDATES = 512


class LocalDirSource:
    """Roots such as ``/usr/lib/debug``, searched for:

    - ``.build-id/<xx>/<rest>.debug`` (any distribution),
    - ``boot/vmlinux-<release>`` (Debian), ``lib/modules/<release>/vmlinux`` (Fedora),
      ``vmlinux-<release>`` and ``<release>/vmlinux`` (flat trees).
    """

    name = "dir"

    def __init__(self, roots: Sequence[Path]):
        self.roots = [Path(r) for r in roots]

    def _candidates(self, wanted: Wanted) -> Iterator[Path]:
        for root in self.roots:
            if wanted.build_id:
                bid = wanted.build_id
                yield root / ".build-id" / bid[:2] / f"{bid[2:]}.debug"
            if wanted.release:
                rel = wanted.release
                yield from (root / "boot" / f"vmlinux-{rel}",
                            root / "lib" / "modules" / rel / "vmlinux",
                            root / f"vmlinux-{rel}", root / rel / "vmlinux")
            elif wanted.build_id:
                # Release unknown: every vmlinux of the tree, matched by build-id below.
                found = 0
                for pattern in ("boot/vmlinux-*", "lib/modules/*/vmlinux", "vmlinux-*",
                                "*/vmlinux"):
                    for path in sorted(root.glob(pattern)):
                        found += 1
                        if found > _MAX_CANDIDATES:
                            return
                        yield path

    def fetch(self, wanted: Wanted, workdir: Path) -> Path | None:
        """An existing file whose build-id matches (or, by release, whose name matches)."""
        seen: set[Path] = set()
        for path in self._candidates(wanted):
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            if wanted.build_id is None:
                return path  # release match; the cache verifies the banner
            try:
                if read_build_id(path) == wanted.build_id:
                    return path
            except (MalformedInput, OSError):
                continue  # not an ELF / unreadable: not this one
        return None
