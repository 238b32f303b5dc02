"""Retention of the crash store: crashes stored more than a configured age ago are pruned —
their rows, their re-analysis history and, when asked, their objects (the dump with its index
and kernel log, the report) — while their clusters keep everything counted about them.

What pruning leaves alone, on purpose: a cluster's and a signature's ``count``,
``first_seen``/``last_seen`` and hosts, the per-cluster aggregates (per day, kernel, host,
taint set, module), the fleet's per-kernel counts and taint sets. They are totals over every
crash ever stored: the web pages and the scrape-time collector read them, and a Prometheus
counter must never go down. Only what lists crashes one by one (a cluster's crash list, a
host's page) shows the crashes still kept.

Age is the time the crash was stored (``analyzed_at``): a host's clock, which sets
``crash_time``, may be years off. Work goes in batches of ``batch`` crashes, oldest first,
one transaction each; a batch's objects are deleted before its rows, so a prune killed at any
point leaves nothing that a run later cannot finish (an object is never left behind by a row
that is gone; deleting a missing object is no error), and the next run carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from store.errors import unavailable_as_retryable
from store.schema import crash_history, crashes

__all__ = ["ObjectRemover", "PruneResult", "objects_of", "prune"]

INDEX_SUFFIX = ".flatindex"  # vmcore.formats.flattened.INDEX_SUFFIX (no import: layering)
DMESG_SUFFIX = ".dmesg"  # the agent's kernel log beside the dump


class ObjectRemover(Protocol):
    """What pruning needs of the object store (``ingest.objectstore.ObjectStore.delete``)."""

    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class PruneResult:
    """What a prune did (or, with ``dry_run``, would do). ``cutoff``: crashes stored before
    it are pruned; ``objects``: object keys deleted (or to delete); ``complete``: False when
    it stopped early (asked to stop), the rest is for the next run."""

    cutoff: datetime
    crashes: int
    objects: int
    batches: int
    complete: bool


def objects_of(dump_key: str | None, report_key: str | None) -> list[str]:
    """The object keys of one crash: its dump, the dump's index and kernel log, its report."""
    keys = [dump_key + s for s in ("", INDEX_SUFFIX, DMESG_SUFFIX)] if dump_key else []
    return keys + ([report_key] if report_key else [])


def _batches(conn: sa.Connection, cutoff: datetime, batch: int) -> Iterator[Sequence[Any]]:
    """The crashes stored before ``cutoff``, oldest first, ``batch`` at a time (keyset
    paging on the ``analyzed_at`` index: each page is an indexed range, never a scan)."""
    after: tuple[datetime, str] | None = None
    while True:
        q = (sa.select(crashes.c.event_id, crashes.c.analyzed_at, crashes.c.dump_key,
                       crashes.c.report_key)
             .where(crashes.c.analyzed_at < cutoff)
             .order_by(crashes.c.analyzed_at, crashes.c.event_id).limit(batch))
        if after is not None:
            q = q.where(sa.tuple_(crashes.c.analyzed_at, crashes.c.event_id) > after)
        rows = conn.execute(q).all()
        if not rows:
            return
        yield rows
        after = (rows[-1].analyzed_at, rows[-1].event_id)


def prune(engine: sa.Engine, *, older_than: timedelta, remover: ObjectRemover | None = None,
          batch: int = 500, dry_run: bool = False, now: datetime | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> PruneResult:
    """Prune the crashes stored more than ``older_than`` before ``now``; with ``remover``,
    their objects too. Idempotent: a second run finds nothing left to do."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    cutoff = (now or datetime.now(UTC)) - older_than
    if engine.dialect.name == "sqlite":
        cutoff = cutoff.astimezone(UTC).replace(tzinfo=None)  # stored naive, as UTC
    n_crashes = n_objects = n_batches = 0
    url = engine.url.render_as_string(hide_password=True)
    if dry_run:
        with unavailable_as_retryable(url), engine.connect() as conn:
            for rows in _batches(conn, cutoff, batch):
                n_crashes += len(rows)
                n_objects += sum(len(objects_of(r.dump_key, r.report_key)) for r in rows
                                 ) if remover is not None else 0
                n_batches += 1
        return PruneResult(_aware(cutoff), n_crashes, n_objects, n_batches, True)
    while not should_stop():
        with unavailable_as_retryable(url), engine.connect() as conn:
            rows = next(_batches(conn, cutoff, batch), [])
        if not rows:
            return PruneResult(_aware(cutoff), n_crashes, n_objects, n_batches, True)
        if remover is not None:
            for r in rows:  # objects first: a row is the only record of its objects
                for key in objects_of(r.dump_key, r.report_key):
                    remover.delete(key)
                    n_objects += 1
        ids = [r.event_id for r in rows]
        with unavailable_as_retryable(url), engine.begin() as conn:
            conn.execute(sa.delete(crash_history).where(crash_history.c.event_id.in_(ids)))
            gone = conn.execute(sa.delete(crashes).where(
                crashes.c.event_id.in_(ids), crashes.c.analyzed_at < cutoff)
                .returning(crashes.c.event_id)).all()
        n_crashes += len(gone)
        n_batches += 1
    return PruneResult(_aware(cutoff), n_crashes, n_objects, n_batches, False)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
