"""Re-analysis requests: the crash-reported event of a stored crash, rebuilt from its row and
the object store, to be published on the reprocessing topic with a request id.

Why a separate topic: re-analyzing a whole fleet's history must not delay today's crashes.
``crashfleet analyzer --reanalysis`` workers consume it in their own consumer group; the
worker then moves the crash to its new signature and cluster exactly once per request
(``store.history.reclassify``).
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterable
from typing import Any

from foundation.timefmt import iso_utc
from ingest.eventlog import EventProducer
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from ingest.objectstore import ObjectStore
from store.history import ReanalysisTarget

__all__ = ["publish_requests", "rebuild_event"]

_SHA = re.compile(r"[0-9a-f]{64}")


def rebuild_event(target: ReanalysisTarget, objects: ObjectStore,
                  report_suffix: str) -> CrashReported | None:
    """The crash-reported event that names ``target``'s dump (or kernel log), or None when
    neither is in the object store any more."""
    if target.dump_key is not None:
        key, dmesg_key = target.dump_key, None
    elif target.report_key is not None and target.report_key.endswith(report_suffix):
        key, dmesg_key = None, target.report_key.removesuffix(report_suffix)
    else:
        return None
    stored = key or dmesg_key
    assert stored is not None
    m = _SHA.match(posixpath.basename(stored))
    info = objects.head(stored)
    if m is None or info is None:
        return None
    sha = m.group(0)
    if crash_event_id(sha) != target.event_id:
        return None
    index_key = None
    if key is not None and objects.head(key + ".flatindex") is not None:
        index_key = key + ".flatindex"
    return CrashReported(
        event_id=target.event_id, schema_version=1,
        host=HostIdentity(target.host, target.machine_id, ""),
        dump=DumpRef(sha256=sha, size=info.size, format="unknown",
                     content="full" if key else "log-only", key=key, dmesg_key=dmesg_key,
                     index_key=index_key),
        layout="plain", source_path="", agent_version="reanalyze",
        reported_at=iso_utc(time.time()),
        kernel_release=target.kernel_release, build_id=target.build_id,
        crash_time=iso_utc(target.crash_time) if target.crash_time else None)


def publish_requests(targets: Iterable[ReanalysisTarget], *, objects: ObjectStore,
                     producer: EventProducer, topic: str, request_id: str,
                     report_suffix: str, header: str) -> dict[str, Any]:
    """Publish one request per target; returns counts (``published``, ``missing``)."""
    published = missing = 0
    for t in targets:
        event = rebuild_event(t, objects, report_suffix)
        if event is None:
            missing += 1
            continue
        producer.send(topic, event.to_bytes(), key=t.machine_id.encode() or None,
                      headers=[("event-type", b"crash-reported"),
                               (header, request_id.encode())])
        published += 1
    producer.flush()
    return {"published": published, "missing": missing, "request_id": request_id}
