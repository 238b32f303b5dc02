"""The source contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Source", "Wanted"]


@dataclass(frozen=True)
class Wanted:
    """What to fetch: a build-id (hex), or a release when the build-id is unknown/garbage."""

    build_id: str | None
    release: str | None = None

    def __str__(self) -> str:
        return self.build_id or f"release {self.release}"


class Source(Protocol):
    """A place vmlinux files can be obtained from."""

    @property
    def name(self) -> str:
        """Short name for logs and metric labels (``debuginfod``, ``dir``, ``deb``)."""
        ...

    def fetch(self, wanted: Wanted, workdir: Path) -> Path | None:
        """A readable vmlinux for ``wanted``: an existing file, or one written below ``workdir``
        (complete when returned), or None when this source does not have it. Raises
        :class:`~symbol_cache.errors.SourceUnavailable` when the source itself failed."""
        ...
