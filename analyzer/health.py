"""Which dependency is down: the names, how an error maps to one, the taps that see outages
the decoder would otherwise absorb, and the health record (a gauge per dependency and one
log line per state change, never one per retry).

Why taps: the dump library turns a failed read into a note on a partial report, and a failed
symbol lookup into a log-only report — right for a bad dump, wrong for an outage, whose
report would carry a different signature than the one the dump really has. The worker wraps
the object store and the pack provider it hands the decoder; any retryable error they raise
is remembered, and the event is retried later whatever the decoder made of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from foundation.errors import is_retryable
from store.errors import StoreUnavailable
from symbol_cache.errors import SymbolCacheError

__all__ = ["DEPENDENCIES", "AssignmentWatch", "DependencyHealth", "OutageTap",
           "dependency_of"]

log = structlog.get_logger("crashfleet.analyzer")

# The analyzer's dependencies, as the ``dependency`` label says them.
DEPENDENCIES = ("object_store", "store", "event_log", "symbols")


def dependency_of(exc: BaseException) -> str:
    """The dependency a retryable error of the processing step came from (the event log's
    own errors are classified where the loop calls it)."""
    if isinstance(exc, StoreUnavailable):
        return "store"
    if isinstance(exc, SymbolCacheError):
        return "symbols"
    return "object_store"


class OutageTap:
    """Remembers the first retryable error raised through the wrapped object store or pack
    provider, so an outage the decoder absorbed still makes the event retry."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.dependency: str | None = None

    def _seen(self, exc: BaseException, dependency: str) -> None:
        if self.error is None and is_retryable(exc):
            self.error, self.dependency = exc, dependency

    def objects(self, store: Any) -> Any:
        """``store`` with ``head`` and ``get_range`` watched."""
        return _TappedObjects(store, self)

    def symbols(self, provider: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
        """``provider`` watched (None stays None)."""
        if provider is None:
            return None

        def get(info: Any) -> Any:
            try:
                return provider(info)
            except Exception as exc:
                self._seen(exc, "symbols")
                raise

        return get


class _TappedObjects:
    def __init__(self, store: Any, tap: OutageTap):
        self._store = store
        self._tap = tap

    @property
    def location(self) -> str:
        return str(self._store.location)

    def head(self, key: str) -> Any:
        try:
            return self._store.head(key)
        except Exception as exc:
            self._tap._seen(exc, "object_store")
            raise

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            data: bytes = self._store.get_range(key, start, length)
            return data
        except Exception as exc:
            self._tap._seen(exc, "object_store")
            raise


class DependencyHealth:
    """Up/down per dependency: ``crashfleet_analyzer_dependency_up{dependency}`` and a log
    line when a dependency goes down (``dependency.down``) or answers again
    (``dependency.up``, with how long it was down)."""

    def __init__(self, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic):
        self.gauge = Gauge("crashfleet_analyzer_dependency_up",
                           "1 while the dependency answers, 0 while it is down.",
                           ["dependency"], registry=registry)
        for dep in DEPENDENCIES:
            self.gauge.labels(dependency=dep).set(1)
        self._down_since: dict[str, float] = {}
        self._clock = clock

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down_since

    def down(self, dependency: str, error: str) -> None:
        if dependency in self._down_since:
            return
        self._down_since[dependency] = self._clock()
        self.gauge.labels(dependency=dependency).set(0)
        log.warning("dependency.down", dependency=dependency, error=error[:500])

    def up(self, dependency: str) -> None:
        since = self._down_since.pop(dependency, None)
        if since is None:
            return
        self.gauge.labels(dependency=dependency).set(1)
        log.info("dependency.up", dependency=dependency,
                 down_s=round(self._clock() - since, 1))

    def all_up(self, dependencies: tuple[str, ...] = DEPENDENCIES) -> None:
        for dep in dependencies:
            self.up(dep)


class AssignmentWatch:
    """Whether this member of the consumer group holds partitions:
    ``crashfleet_analyzer_partitions_assigned``, and one log line when it has held none for
    ``alarm_s`` although its polls succeed (``consumer.unassigned``, with the member state
    kafka-python reports: a member that never gets an assignment from a broker that answers
    is silent otherwise) and one when it holds partitions again (``consumer.assigned``).
    Not a dependency outage: a group with more members than partitions leaves some idle."""

    def __init__(self, registry: CollectorRegistry, alarm_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.gauge = Gauge("crashfleet_analyzer_partitions_assigned",
                           "Partitions of the consumed topic assigned to this worker.",
                           registry=registry)
        self.alarm_s = alarm_s
        self._clock = clock
        self._none_since: float | None = clock()
        self.alarmed = False

    def seen(self, assigned: int, group_state: str | None = None) -> None:
        """After a poll that did not fail: ``assigned`` partitions held now."""
        self.gauge.set(assigned)
        now = self._clock()
        if assigned:
            if self.alarmed:
                log.info("consumer.assigned", partitions=assigned,
                         unassigned_s=round(now - (self._none_since or now), 1))
            self._none_since, self.alarmed = None, False
            return
        if self._none_since is None:
            self._none_since = now
        if not self.alarmed and now - self._none_since >= self.alarm_s:
            self.alarmed = True
            log.warning("consumer.unassigned", unassigned_s=round(now - self._none_since, 1),
                        group_state=group_state or "unknown")
