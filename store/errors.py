"""Errors of the crash store, split into retryable and permanent.

A :class:`StoreUnavailable` means the database did not answer (server down, connection
dropped, SQLite busy or its disk failing): the same write may succeed later, so the analyzer
waits instead of dead-lettering. Everything else SQLAlchemy raises is a bug or a schema
problem and propagates as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy.exc

from foundation.errors import CrashfleetError

__all__ = ["StoreError", "StoreUnavailable", "unavailable_as_retryable"]


class StoreError(CrashfleetError):
    """Base of the crash store's errors."""


class StoreUnavailable(StoreError):
    """The database did not answer; ``url`` names it (without its password)."""

    retryable = True

    def __init__(self, url: str, detail: str):
        self.url = url
        super().__init__(f"crash store {url} unavailable: {detail}")


@contextlib.contextmanager
def unavailable_as_retryable(url: str) -> Iterator[None]:
    """Turn SQLAlchemy's connection-level errors into :class:`StoreUnavailable`.

    ``OperationalError`` is what the DBAPI raises for a refused or dropped connection, a
    server shutting down, a lock timeout or an I/O error; ``InterfaceError`` and any
    ``DBAPIError`` flagged ``connection_invalidated`` are a connection that broke mid-call."""
    try:
        yield
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        raise StoreUnavailable(url, _first_line(exc)) from exc
    except sqlalchemy.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(url, _first_line(exc)) from exc
        raise


def _first_line(exc: sqlalchemy.exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]
