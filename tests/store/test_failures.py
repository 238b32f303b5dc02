"""Dead letters marked as replayed and resolved (migration 0006_faults2), on an SQLite file and
a PostgreSQL database: rows written before the migration keep their data; ``dlq replay``
counts its re-publications; a later store of the event resolves the row, a new failure of it
reopens the row."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from store import CrashStore
from store.failures import failure_marks, mark_replayed
from store.schema import failures

from .test_store import T0, UAU, rec


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> CrashStore:
    """A store at the revision before 0006_faults2."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crashfleet.sqlite'}"
    else:
        dsn: str = request.getfixturevalue("postgres_db")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    s = CrashStore(url)
    s.migrate("0006_windows")
    request.addfinalizer(s.dispose)
    return s


def test_replayed_and_resolved_marks(old_store: CrashStore) -> None:
    store = old_store
    with store.engine.begin() as conn:  # a dead letter recorded before the migration
        conn.execute(sa.text("INSERT INTO failures (event_id, error, attempts, dead_lettered,"
                             " last_at) VALUES ('e1', 'decoder bug', 1, true, :t)"), {"t": T0})
    store.migrate()
    store.record_failure("raw-x", "malformed", 1, dead_lettered=True)
    assert failure_marks(store, ["e1", "raw-x", "nope"]).keys() == {"e1", "raw-x"}
    m = failure_marks(store, ["e1"])["e1"]
    assert (m.replays, m.replayed_at, m.resolved_at) == (0, None, None)

    assert mark_replayed(store, ["e1", "nope"], now=T0) == 1
    assert mark_replayed(store, ["e1"], now=T0 + timedelta(hours=1)) == 1
    m = failure_marks(store, ["e1"])["e1"]
    assert (m.replays, m.replayed_at) == (2, T0 + timedelta(hours=1))

    stored = rec("e1", UAU, minutes=90)
    store.record(stored)
    assert failure_marks(store, ["e1"])["e1"].resolved_at == stored.analyzed_at
    assert failure_marks(store, ["raw-x"])["raw-x"].resolved_at is None
    store.record(stored)  # a redelivery changes nothing
    assert failure_marks(store, ["e1"])["e1"].resolved_at == stored.analyzed_at

    store.record_failure("e1", "failed again", 2, dead_lettered=True)
    m = failure_marks(store, ["e1"])["e1"]
    assert m.resolved_at is None and m.replays == 2
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(failures)).scalar_one() == 2
