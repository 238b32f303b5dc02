"""The suite's PostgreSQL: each test gets its own database on a real server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


@pytest.mark.services
def test_own_database_transactions_and_constraints(postgres_db: str) -> None:
    engine = sa.create_engine(postgres_db.replace("postgresql://", "postgresql+psycopg://", 1))
    meta = sa.MetaData()
    crashes = sa.Table("crashes", meta, sa.Column("event_id", sa.String, primary_key=True),
                       sa.Column("host", sa.String, nullable=False))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(crashes.insert().values(event_id="e1", host="h1"))
    # A unique violation rolls back the whole transaction (the store's idempotency relies on it).
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(crashes.insert().values(event_id="e2", host="h2"))
        conn.execute(crashes.insert().values(event_id="e1", host="h3"))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(crashes.c.event_id).order_by(crashes.c.event_id)).all()
        db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    assert [r[0] for r in rows] == ["e1"]
    assert db.startswith("cf_")  # a per-test database, not a shared one
    engine.dispose()
