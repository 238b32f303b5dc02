"""The migrations build exactly the tables :mod:`store.schema` describes (columns, types,
nullability, indexes, foreign keys), on SQLite and on PostgreSQL: the code and a migrated
store never disagree, whatever order the revisions were written in."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store import CrashStore
from store.schema import metadata


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrated_store_matches_the_schema(backend: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    else:
        dsn: str = request.getfixturevalue("postgres_db")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    store = CrashStore(url)
    store.migrate()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.dispose()
    assert diff == []
