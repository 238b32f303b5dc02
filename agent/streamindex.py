"""The offset index of a flattened dump, built from its bytes as the agent uploads them."""

from __future__ import annotations

from vmcore.errors import AnalyzerError
from vmcore.formats.flattened import FlatIndexBuilder, build_index
from vmcore.source import LocalFileSource

__all__ = ["StreamIndex"]


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
