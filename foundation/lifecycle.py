"""Process lifecycle shared by the long-running commands (agent, analyzer, run)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

__all__ = ["finish_within", "stop_on_signals"]

T = TypeVar("T")


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


def finish_within(work: Callable[[], T], stop: threading.Event, *, component: str,
                  grace_s: float = 8.0) -> T:
    """``work()`` in a worker thread, its result (or its exception) returned here.

    Once ``stop`` is set, the work gets ``grace_s`` seconds to finish; a call that cannot see
    the flag meanwhile (a ranged read from a frozen S3 server waits out its read timeout)
    must not hold the process past its stop timeout, so the process then exits at once
    (status 0), logging ``<component>.stop_forced``. Only for work that is safe to abandon
    at any point: the agent's journal and the analyzer's commit-after-store make it so."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"{component}-work", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        worker.join(0.2)
    worker.join(grace_s)
    if worker.is_alive():
        structlog.get_logger(f"crashfleet.{component}").warning(
            f"{component}.stop_forced", waited_s=grace_s,
            detail="work did not finish in time; abandoned (resumed at the next start)")
        sys.stderr.flush()
        os._exit(0)
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
