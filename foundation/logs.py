"""Logging: structlog, configured once by the CLI.

JSON lines when stderr is not a terminal (journald, files, CI), readable console lines when
it is. Components log short event keys (``dump.uploaded``) with fields, and bind ``crash_id``,
``host`` and ``build_id`` through :mod:`structlog.contextvars`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO, cast

import structlog

__all__ = ["LogThrottle", "configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (not when logging was configured): a
    replaced stderr (a test's capture, a daemon's redirection) never leaves the loggers
    holding a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog, and stdlib logging of libraries, to write to ``stream`` (stderr).

    ``fmt`` is ``json``, ``console`` or ``auto`` (console when ``stream`` is a terminal).
    Library records (kafka-python, botocore, urllib3, uvicorn) go through structlog's
    ``ProcessorFormatter`` with the same renderer, so json mode writes only JSON lines.
    """
    out: TextIO = stream if stream is not None else cast(TextIO, _CurrentStderr())
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    numeric = _LEVELS[level]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    renderer: structlog.types.Processor
    tail: list[structlog.types.Processor] = []
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        tail.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    stamp, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           stamp, *tail],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are kept quiet but visible: warnings and worse, or finer with --log-level.
    root.setLevel(max(numeric, logging.WARNING))


class LogThrottle:
    """Says whether a repeated condition is worth another log line: the first time, then at
    most once per ``interval_s`` while it lasts (a missing bucket is one line a minute, not
    one per dump per retry). ``key`` names the condition (e.g. the error's text)."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1000):
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._max_keys = max_keys

    def allow(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._last) >= self._max_keys:  # bounded: forget the oldest conditions
            for old in sorted(self._last, key=self._last.__getitem__)[: self._max_keys // 2]:
                del self._last[old]
        self._last[key] = now
        return True
