"""The crash store (SQLAlchemy Core + Alembic): crashes, signatures, clusters, taint sets,
failures; SQLite by default, PostgreSQL for fleets."""

from store.errors import StoreError, StoreUnavailable
from store.store import (
    ClusterRow,
    CrashRecord,
    CrashRow,
    CrashStore,
    RecordOutcome,
    StoreStats,
)

__all__ = [
    "ClusterRow",
    "CrashRecord",
    "CrashRow",
    "CrashStore",
    "RecordOutcome",
    "StoreError",
    "StoreStats",
    "StoreUnavailable",
]
