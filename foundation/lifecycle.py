"""Process lifecycle shared by the long-running commands (agent, analyzer, run)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog

__all__ = ["stop_on_signals"]


def stop_on_signals(component: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT, so the work loop finishes its current item and
    exits cleanly; logs ``<component>.stopping`` with the signal."""
    stop = threading.Event()
    log = structlog.get_logger(f"crashfleet.{component}")

    def _stop(signum: int, frame: Any) -> None:
        log.info(f"{component}.stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop
