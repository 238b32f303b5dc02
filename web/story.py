"""One crash's story for its page: the stored report (JSON beside the dump) and the kernel log
read back from the dump (or the shipped log of a log-only crash), with the oops lines marked.

Everything here came from a host: sizes are bounded before reading, JSON that is not the
report's shape is shown as raw text, and templates escape every string.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog

from ingest.objectstore import ObjectStore
from store.views import CrashEntry

__all__ = ["MAX_LOG_LINES", "MAX_REPORT_BYTES", "CrashStory", "LogLine", "StoryReader"]

log = structlog.get_logger("crashfleet.web")

MAX_REPORT_BYTES = 8 * 1024 * 1024
MAX_LOG_BYTES = 16 * 1024 * 1024
MAX_LOG_LINES = 20_000  # the newest lines are kept: the oops and the panic are at the end
MAX_LINE_CHARS = 1000
# "[    4.067940] [     T95] " as dmesg and vmcore-dmesg print them (a log-only shipment).
_DMESG_PREFIX = re.compile(r"^\[\s*\d+\.\d+\]\s?(?:\[\s*[TC]\d+\]\s?)?")


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based line number in the shown log
    text: str
    oops: bool  # part of an oops record (highlighted; the rest is collapsed)


@dataclass(frozen=True)
class CrashStory:
    """``report`` the stored report (None: absent or unreadable, ``report_error`` says why);
    ``log`` the kernel log lines (empty when unavailable, ``log_error`` says why)."""

    report: dict[str, Any] | None
    report_text: str
    report_error: str | None
    log: tuple[LogLine, ...]
    log_error: str | None
    log_truncated: bool


class StoryReader:
    """Reads stories through ``objects``; keeps the last ``cache_size`` logs in memory."""

    def __init__(self, objects: ObjectStore | None, *, report_suffix: str = ".report.json",
                 cache_size: int = 16):
        self.objects = objects
        self.report_suffix = report_suffix
        self._cache: OrderedDict[str, tuple[tuple[LogLine, ...], str | None, bool]] = \
            OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def story(self, crash: CrashEntry) -> CrashStory:
        report, text, rerr = self._report(crash)
        lines, lerr, truncated = self._log(crash)
        return CrashStory(report, text, rerr, lines, lerr, truncated)

    def _report(self, crash: CrashEntry) -> tuple[dict[str, Any] | None, str, str | None]:
        if self.objects is None:
            return None, "", "no object store configured"
        if not crash.report_key:
            return None, "", "no report stored for this crash"
        try:
            info = self.objects.head(crash.report_key)
            if info is None:
                return None, "", f"report {crash.report_key} is missing"
            if info.size > MAX_REPORT_BYTES:
                return None, "", f"report is {info.size} bytes (over {MAX_REPORT_BYTES})"
            raw = self.objects.get_range(crash.report_key, 0, info.size)
        except Exception as exc:  # an outage shows on the page, it does not fail it
            log.warning("web.report_unreadable", key=crash.report_key, error=str(exc))
            return None, "", f"report unreadable: {type(exc).__name__}: {exc}"
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError as exc:
            return None, text, f"report is not JSON: {exc}"
        if not isinstance(body, dict):
            return None, text, "report is not a JSON object"
        return body, json.dumps(body, indent=2, ensure_ascii=False), None

    def _log(self, crash: CrashEntry) -> tuple[tuple[LogLine, ...], str | None, bool]:
        with self._lock:
            hit = self._cache.get(crash.event_id)
            if hit is not None:
                self._cache.move_to_end(crash.event_id)
                return hit
        result = self._read_log(crash)
        with self._lock:
            self._cache[crash.event_id] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _read_log(self, crash: CrashEntry) -> tuple[tuple[LogLine, ...], str | None, bool]:
        if self.objects is None:
            return (), "no object store configured", False
        try:
            if crash.dump_key:
                text = self._log_from_dump(crash.dump_key)
            elif crash.report_key and crash.report_key.endswith(self.report_suffix):
                text = self._log_object(crash.report_key[: -len(self.report_suffix)])
            else:
                return (), "neither a dump nor a kernel log is stored", False
        except Exception as exc:  # bad dump bytes or an outage: the page says so
            log.warning("web.log_unreadable", event_id=crash.event_id, error=str(exc))
            return (), f"kernel log unreadable: {type(exc).__name__}: {exc}", False
        return _mark_oopses(text)

    def _log_object(self, key: str) -> str:
        assert self.objects is not None
        info = self.objects.head(key)
        if info is None:
            raise FileNotFoundError(f"kernel log {key} is missing")
        start = max(0, info.size - MAX_LOG_BYTES)
        raw = self.objects.get_range(key, start, info.size - start)
        return "\n".join(_DMESG_PREFIX.sub("", ln)
                         for ln in raw.decode("utf-8", "replace").splitlines())

    def _log_from_dump(self, key: str) -> str:
        assert self.objects is not None
        from vmcore.formats import open_dump
        from vmcore.formats.flattened import INDEX_SUFFIX, FlatIndex
        from vmcore.logread import read_log
        from vmcore.source import ObjectStoreSource

        index = None
        info = self.objects.head(key + INDEX_SUFFIX)
        if info is not None and info.size < 64 * 1024 * 1024:
            index = FlatIndex.from_bytes(self.objects.get_range(key + INDEX_SUFFIX, 0,
                                                                info.size))
        src = ObjectStoreSource(self.objects, key, block_size=64 * 1024, max_blocks=64)
        _info, printk = read_log(open_dump(src, index))
        return printk.text()


def _mark_oopses(text: str) -> tuple[tuple[LogLine, ...], str | None, bool]:
    from vmcore.oops import parse_log

    raw_lines = text.splitlines()
    truncated = len(raw_lines) > MAX_LOG_LINES
    skip = len(raw_lines) - MAX_LOG_LINES if truncated else 0
    marked = [False] * len(raw_lines)
    try:
        for oops in parse_log(text).oopses:
            start, end = oops.lines
            for i in range(max(0, start), min(end, len(raw_lines))):
                marked[i] = True
    except Exception as exc:  # the parser met something new: show the log unmarked
        log.warning("web.oops_parse_failed", error=str(exc))
    lines = tuple(LogLine(i + 1, raw_lines[i][:MAX_LINE_CHARS], marked[i])
                  for i in range(skip, len(raw_lines)))
    return lines, None, truncated
