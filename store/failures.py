"""The failures table beyond recording a dead letter: which ones ``crashfleet dlq replay``
re-published (when, how many times), and which ones a later store of the event resolved
(``CrashStore.record`` sets ``resolved_at``; a new failure of the event clears it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from store.errors import unavailable_as_retryable
from store.schema import failures
from store.store import CrashStore

__all__ = ["FailureMarks", "failure_marks", "mark_replayed"]

_CHUNK = 500  # keys per statement


@dataclass(frozen=True)
class FailureMarks:
    """What became of one dead letter: ``replays`` re-publications, the latest at
    ``replayed_at``; ``resolved_at``: when the event was stored after all (None: not yet)."""

    key: str
    replays: int
    replayed_at: datetime | None
    resolved_at: datetime | None


def _utc(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)


def _chunks(keys: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for k in keys:
        batch.append(k)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def mark_replayed(store: CrashStore, keys: Iterable[str], now: datetime | None = None) -> int:
    """Mark the failure rows ``keys`` as re-published at ``now``; how many rows there were."""
    when = now or datetime.now(UTC)
    n = 0
    with unavailable_as_retryable(store.safe_url), store.engine.begin() as conn:
        for batch in _chunks(keys):
            n += len(conn.execute(sa.update(failures).where(failures.c.event_id.in_(batch))
                                  .values(replayed_at=when, replays=failures.c.replays + 1)
                                  .returning(failures.c.event_id)).all())
    return n


def failure_marks(store: CrashStore, keys: Iterable[str]) -> dict[str, FailureMarks]:
    """The marks of the failure rows among ``keys`` (a key without a row is left out)."""
    out: dict[str, FailureMarks] = {}
    with unavailable_as_retryable(store.safe_url), store.engine.connect() as conn:
        for batch in _chunks(keys):
            for r in conn.execute(sa.select(failures.c.event_id, failures.c.replays,
                                            failures.c.replayed_at, failures.c.resolved_at)
                                  .where(failures.c.event_id.in_(batch))):
                out[r.event_id] = FailureMarks(r.event_id, int(r.replays or 0),
                                               _utc(r.replayed_at), _utc(r.resolved_at))
    return out

