"""Logging: structlog, configured once by the CLI.

JSON lines when stderr is not a terminal (journald, files, CI), readable console lines when
it is. Components log short event keys (``dump.uploaded``) with fields, and bind ``crash_id``,
``host`` and ``build_id`` through :mod:`structlog.contextvars`.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging of libraries) to write to ``stream`` (stderr).

    ``fmt`` is ``json``, ``console`` or ``auto`` (console when ``stream`` is a terminal).
    """
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    numeric = _LEVELS[level]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (kafka-python, botocore) log through stdlib logging: keep them quiet but visible.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
