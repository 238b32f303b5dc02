"""Processing one ``crash-reported`` event: read the dump with ranged reads, analyze, sign,
cluster, store, and put the report beside the dump.

Errors tell the consumer loop what to do (arroyo's rule): :class:`RetryLater` — a service is
unreachable, try the same event again; :class:`DeadLetter` — this event can never be analyzed
(malformed, truncated or hostile dump), send it to the dead-letter topic with the reason and
keep the dump.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from analyzer.health import OutageTap, dependency_of
from foundation.errors import CrashfleetError, is_retryable
from foundation.timefmt import iso_utc, parse_iso
from ingest.errors import InvalidRange, ObjectNotFound
from ingest.events import CrashAnalyzed, CrashReported, decode_crash_reported
from ingest.objectstore import ObjectStore
from ingest.schema import SchemaError
from signature import Signature
from signature.inputs import sign_report
from store import CrashRecord, CrashStore, RecordOutcome
from store.history import reclassify
from vmcore.analyze import Analysis, PackProvider
from vmcore.errors import AnalyzerError

__all__ = ["DeadLetter", "EventProcessor", "Processed", "RetryLater"]

log = structlog.get_logger("crashfleet.analyzer")
_MAX_INDEX = 64 * 1024 * 1024  # bytes of a flattened dump's offset index


class RetryLater(Exception):
    """A transient failure: the same event may succeed later, once ``dependency`` (one of
    :data:`analyzer.health.DEPENDENCIES`) answers again."""

    def __init__(self, reason: str, *, dependency: str = "object_store"):
        self.dependency = dependency
        super().__init__(reason)


class DeadLetter(Exception):
    """A permanent failure: the event goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, *, event_id: str | None = None):
        self.event_id = event_id
        super().__init__(reason)


@dataclass(frozen=True)
class Processed:
    """The result of one event: what was stored and what to announce."""

    event: CrashReported
    signature: Signature
    outcome: RecordOutcome
    analyzed: CrashAnalyzed
    seconds: float
    bytes_fetched: int | None


def _decode(event: CrashReported, tap: OutageTap, fn: Callable[..., Analysis], *args: Any,
            **kwargs: Any) -> Analysis:
    """Run the decoder. An error it did not type is a decoder bug met on this dump: the event
    is dead-lettered (the dump stays stored, for a replay once it is fixed) instead of
    crashing the worker on every redelivery and stalling its partition. Byte sources and
    symbol sources raise typed errors, so no outage ends up here.

    An outage the decoder absorbed (a failed read turned into a partial report, a symbol
    source that did not answer turned into a log-only report) retries the event: its report
    would carry another signature than the dump has (docs/reliability.md)."""
    try:
        analysis = fn(*args, **kwargs)
    except AnalyzerError:
        _raise_outage(tap)
        raise
    except Exception as exc:
        _raise_outage(tap)
        log.exception("decoder.bug")
        raise DeadLetter(f"decoder bug: {type(exc).__name__}: {exc}",
                         event_id=event.event_id) from exc
    _raise_outage(tap)
    return analysis


def _raise_outage(tap: OutageTap) -> None:
    if tap.error is not None:
        raise RetryLater(f"{type(tap.error).__name__}: {tap.error}",
                         dependency=tap.dependency or "object_store") from tap.error


class EventProcessor:
    """Turns raw event bytes into a stored crash. Stateless between events."""

    def __init__(self, *, objects: ObjectStore, store: CrashStore, report_suffix: str,
                 block_cache_bytes: int, symbols: PackProvider | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.objects = objects
        self.symbols = symbols
        self.store = store
        self.report_suffix = report_suffix
        self.block_cache_bytes = block_cache_bytes
        self.clock = clock

    def process(self, raw: bytes, *, reanalysis: str | None = None) -> Processed:
        """Analyze the event ``raw`` and store it; with ``reanalysis`` (a request id), the
        stored crash is given its new signature and cluster instead (store/history.py)."""
        try:
            event = decode_crash_reported(raw)
        except SchemaError as exc:
            raise DeadLetter(f"malformed crash-reported event: {exc}") from exc
        structlog.contextvars.bind_contextvars(crash_id=event.event_id, host=event.host.hostname)
        try:
            return self._process(event, reanalysis)
        except (AnalyzerError, CrashfleetError) as exc:
            if is_retryable(exc):
                raise RetryLater(str(exc), dependency=dependency_of(exc)) from exc
            raise DeadLetter(f"{type(exc).__name__}: {exc}", event_id=event.event_id) from exc
        finally:
            structlog.contextvars.unbind_contextvars("crash_id", "host")

    def _process(self, event: CrashReported, reanalysis: str | None) -> Processed:
        from vmcore.analyze import MAX_LOG_TEXT, analyze, analyze_log
        from vmcore.formats.flattened import FlatIndex
        from vmcore.source import ObjectStoreSource

        t0 = time.monotonic()
        tap = OutageTap()
        src: ObjectStoreSource | None = None
        if event.dump.key is None:
            # Log-only shipment: the kernel log is all there is.
            if event.dump.dmesg_key is None:
                raise DeadLetter("event names neither a dump nor a kernel log",
                                 event_id=event.event_id)
            info = self.objects.head(event.dump.dmesg_key)
            if info is None:
                raise DeadLetter(f"kernel log {event.dump.dmesg_key} is missing",
                                 event_id=event.event_id)
            start = max(0, info.size - MAX_LOG_TEXT)
            text = self.objects.get_range(event.dump.dmesg_key, start, info.size - start)
            analysis = _decode(event, tap, analyze_log, text, source=event.dump.dmesg_key)
            report_base = event.dump.dmesg_key
        else:
            flat_index = None
            if event.dump.index_key:
                # one GET, no HEAD first: an index is far smaller than the bound, and a
                # missing one is read as none (the decoder then scans the dump)
                try:
                    raw = self.objects.get_range(event.dump.index_key, 0, _MAX_INDEX + 1)
                except (ObjectNotFound, InvalidRange):
                    raw = b""
                if 0 < len(raw) <= _MAX_INDEX:
                    flat_index = FlatIndex.from_bytes(raw)
            block = 64 * 1024
            src = ObjectStoreSource(tap.objects(self.objects), event.dump.key,
                                    size=event.dump.size, block_size=block,
                                    max_blocks=max(4, self.block_cache_bytes // block),
                                    max_readahead=32, min_fetch_blocks=4,
                                    whole_object_max=self.block_cache_bytes)
            # no pack for the dump's kernel: its own kallsyms, BTF and ORC (v6.0+)
            analysis = _decode(event, tap, analyze, src, flat_index=flat_index,
                               symbols=tap.symbols(self.symbols), dump_symbols=True)
            report_base = event.dump.key
        signed = sign_report(analysis.report)
        report = dataclasses.replace(analysis.report, title=signed.title.text)
        inputs, sig = signed.inputs, signed.signature
        now = self.clock()
        findings = tuple({"kind": f.kind, "module": f.module} for f in inputs.findings)
        report_key = report_base + self.report_suffix
        body = report.to_dict()
        body["signature"] = {"id": sig.id, "text": sig.text, "frames": list(sig.frames)}
        body["event_id"] = event.event_id
        self.objects.put(report_key, json.dumps(body, indent=2).encode(),
                         {"event-id": event.event_id})
        outcome = self._store(reanalysis, CrashRecord(
            event_id=event.event_id, host=event.host.hostname, machine_id=event.host.machine_id,
            kernel_release=report.kernel.release or event.kernel_release,
            build_id=report.kernel.build_id or event.build_id,
            crash_time=parse_iso(event.crash_time), analyzed_at=now,
            dump_key=event.dump.key, report_key=report_key, signature=sig, findings=findings,
            partial=report.partial, title=signed.title,
            explanation=signed.explanation.to_dict(), arch=report.kernel.arch,
        ))
        analyzed = CrashAnalyzed(
            event_id=event.event_id, schema_version=1, host=event.host,
            kernel_release=report.kernel.release or event.kernel_release, signature_id=sig.id,
            signature=sig.text, cluster_id=outcome.cluster_id, panic_class=sig.panic_class,
            taint=sig.taint, findings=sig.findings, report_key=report_key,
            analyzed_at=iso_utc(now), partial=report.partial,
            new_signature=outcome.new_signature, new_cluster=outcome.new_cluster,
            new_taint_set=outcome.new_taint_set, new_taint_letters=outcome.new_taint_letters,
        )
        return Processed(event, sig, outcome, analyzed, time.monotonic() - t0,
                         src.bytes_fetched if src is not None else None)

    def _store(self, reanalysis: str | None, rec: CrashRecord) -> RecordOutcome:
        if reanalysis is not None:
            moved = reclassify(self.store, rec, reanalysis)
            if moved is not None:
                log.info("crash.reanalyzed", event_id=rec.event_id, request=reanalysis,
                         applied=moved.applied, moved=moved.moved,
                         old_cluster=moved.old_cluster_id, cluster=moved.cluster_id)
                return RecordOutcome(moved.applied, moved.cluster_id, False, False, False, ())
        return self.store.record(rec)
