"""The analyzer's reads of one dump from the object store: the flat index in one GET (no
HEAD first), the dump in one GET when it fits the block cache; a missing index is read as
none (the decoder then scans the dump)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from analyzer.worker import EventProcessor
from ingest import LocalObjectStore
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from store import CrashStore
from vmcore.formats.flattened import build_index
from vmcore.source import BytesSource

from ..vmcore.conftest import CASES


class _Counting:
    def __init__(self, inner: LocalObjectStore):
        self.inner, self.calls = inner, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            self.calls.append(name)
            return attr(*a, **kw)
        return call


@pytest.mark.parametrize("with_index", [True, False])
def test_a_flattened_dump_is_read_in_two_requests(tmp_path: Path, with_index: bool) -> None:
    case = next((c for c in CASES if c.manifest["format"] == "kdump-flattened"
                 and c.manifest["kernel_release"].startswith("6.1")
                 and c.manifest["scenario"] == "uau"), None)
    if case is None:
        pytest.skip("no flattened 6.1 use-after-unload dump fixture")
    data = case.dump.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    objects = _Counting(LocalObjectStore(tmp_path / "objects"))
    objects.inner.put(f"dumps/{sha}", data)
    if with_index:
        objects.inner.put(f"dumps/{sha}.flatindex", build_index(BytesSource(data)).to_bytes())
    store = CrashStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.migrate()
    proc = EventProcessor(objects=objects, store=store, report_suffix=".report.json",
                          block_cache_bytes=16 << 20)  # type: ignore[arg-type]
    event = CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="flattened", content="full",
                     key=f"dumps/{sha}", index_key=f"dumps/{sha}.flatindex"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z")
    done = proc.process(event.to_bytes())
    assert done.outcome.inserted and not done.analyzed.partial
    assert "use-after-module-unload" in done.signature.text
    # the index (found or not), the whole dump, the report
    assert objects.calls == ["get_range", "get_range", "put"]
    assert done.bytes_fetched == len(data)
    store.dispose()
