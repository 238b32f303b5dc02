"""The offset index of a flattened dump, built from its bytes as the agent uploads them."""

from __future__ import annotations

import structlog

from agent.upload import head_or_none
from foundation.text import name_text
from ingest.objectstore import ObjectStore
from vmcore.errors import AnalyzerError
from vmcore.formats.flattened import INDEX_SUFFIX, FlatIndexBuilder, build_index
from vmcore.source import LocalFileSource

__all__ = ["StreamIndex", "ship_index"]

log = structlog.get_logger("crashfleet.agent")


class StreamIndex:
    """The offset index of a flattened dump, built from its bytes as they are uploaded.

    A record header that lies (a disk error, a hostile file) ends the index, never the
    upload: :meth:`finish` then returns None and :attr:`error` says why."""

    def __init__(self) -> None:
        self._builder = FlatIndexBuilder()
        self.error: AnalyzerError | None = None

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.error is None:
            try:
                self._builder.feed(chunk)
            except AnalyzerError as exc:
                self.error = exc

    def finish(self) -> bytes | None:
        """The serialized index, or None when the stream was not a valid flattened dump."""
        if self.error is not None:
            return None
        return self._builder.finish().to_bytes()

    def scan(self, src: LocalFileSource) -> bytes | None:
        """The same from the file itself (the dump was stored before, its index was not)."""
        try:
            return build_index(src).to_bytes()
        except AnalyzerError as exc:
            self.error = exc
            return None


def ship_index(store: ObjectStore, by_fd: str, base: str, sha: str, builder: StreamIndex,
               already_stored: bool) -> str | None:
    """Store a flattened dump's index beside it (``base`` + the index suffix); its key, or
    None when the index could not be built (the dump ships all the same: the analyzer reports
    what is wrong). ``by_fd`` names the open dump, read again if it was stored before."""
    index_key = base + INDEX_SUFFIX
    if already_stored and head_or_none(store, index_key) is not None:
        return index_key
    if already_stored:  # stored before, its index was not
        with LocalFileSource(by_fd) as src:
            index = builder.scan(src)
    else:
        index = builder.finish()
    if index is None:
        log.warning("dump.index_failed", error=name_text(str(builder.error)))
        return None
    store.put(index_key, index, {"sha256": sha})
    return index_key
