"""Window counts: each cluster's crashes in a time window of the cluster list (the last
``days`` UTC days up to ``as_of``) and in the window before it, one row per cluster.

Summing ``cluster_days`` for every cluster on each request costs clusters x days (70,000 rows
for a 30-day window at 2,000 clusters), so the list reads these rows instead. The write path
counts each crash into the windows (:func:`count_in_windows`, in the crash's transaction);
when a reader's day is not the ``as_of`` day of a window, :func:`ensure_windows` rebuilds
that window from ``cluster_days`` once (a day rolled over).

Ordering (PostgreSQL): a writer reads ``window_state`` FOR SHARE; a rebuild locks the table
EXCLUSIVE, so it waits for writers that read the old day and commits before writers that
come after read it. Each crash is counted once: by the rebuild's sum (its writer committed
first) or by its writer's increment (on the rebuilt rows). SQLite: one writer at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from store.schema import cluster_days, cluster_windows, window_state

__all__ = ["count_in_windows", "ensure_windows"]


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _split(days: int, as_of: date, day: date) -> tuple[int, int] | None:
    """(cur, prev) for one crash on ``day``: in the window, in the one before, or neither."""
    since = as_of - timedelta(days=days - 1)
    if day >= since:
        return 1, 0
    if day >= since - timedelta(days=days):
        return 0, 1
    return None


def count_in_windows(conn: sa.Connection, insert: Callable[[sa.Table], Any] | None, *,
                     cluster_id: str, day: date, delta: int) -> None:
    """Add ``delta`` crashes seen on UTC ``day`` to ``cluster_id``'s built windows (``insert``:
    the dialect's insert, for a cluster new to a window; None when only removing)."""
    stmt = sa.select(window_state.c.days, window_state.c.as_of)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    for days, as_of in conn.execute(stmt).all():
        split = _split(int(days), _day(as_of), day)
        if split is None:
            continue
        cur, prev = split[0] * delta, split[1] * delta
        if delta > 0 and insert is not None:
            conn.execute(insert(cluster_windows).values(
                days=days, cluster_id=cluster_id, cur=cur, prev=prev).on_conflict_do_update(
                index_elements=["days", "cluster_id"],
                set_={"cur": cluster_windows.c.cur + cur,
                      "prev": cluster_windows.c.prev + prev}))
        else:
            conn.execute(sa.update(cluster_windows).where(
                cluster_windows.c.days == days, cluster_windows.c.cluster_id == cluster_id)
                .values(cur=cluster_windows.c.cur + cur, prev=cluster_windows.c.prev + prev))


def ensure_windows(engine: sa.Engine, days: int, today: date) -> None:
    """Make the ``days``-day window count up to ``today`` (rebuilt at most once a day)."""
    with engine.connect() as conn:
        as_of = conn.execute(sa.select(window_state.c.as_of)
                             .where(window_state.c.days == days)).scalar_one_or_none()
    if as_of is not None and _day(as_of) == today:
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("LOCK TABLE window_state IN EXCLUSIVE MODE"))
        else:  # take SQLite's write lock before reading: the rebuild reads what it replaces
            conn.execute(sa.text("UPDATE window_state SET days = days WHERE 0"))
        as_of = conn.execute(sa.select(window_state.c.as_of)
                             .where(window_state.c.days == days)).scalar_one_or_none()
        if as_of is not None and _day(as_of) == today:
            return  # another reader rebuilt it meanwhile
        since = today - timedelta(days=days - 1)
        conn.execute(sa.delete(cluster_windows).where(cluster_windows.c.days == days))
        conn.execute(cluster_windows.insert().from_select(
            ["days", "cluster_id", "cur", "prev"],
            sa.select(sa.literal(days), cluster_days.c.cluster_id,
                      sa.func.sum(sa.case((cluster_days.c.day >= since, cluster_days.c.count),
                                          else_=0)),
                      sa.func.sum(sa.case((cluster_days.c.day < since, cluster_days.c.count),
                                          else_=0)))
            .where(cluster_days.c.day >= since - timedelta(days=days))
            .group_by(cluster_days.c.cluster_id)))
        if conn.dialect.name == "postgresql":
            # Fresh statistics for the planner: it otherwise guesses a handful of rows and
            # joins the clusters one index probe at a time.
            conn.execute(sa.text("ANALYZE cluster_windows"))
        if as_of is None:
            conn.execute(window_state.insert().values(days=days, as_of=today))
        else:
            conn.execute(sa.update(window_state).where(window_state.c.days == days)
                         .values(as_of=today))
