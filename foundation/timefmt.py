"""Times on the wire and in logs: UTC ISO-8601 with a ``Z`` (one format everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_utc", "parse_iso"]


def iso_utc(when: datetime | float) -> str:
    """``when`` (an aware datetime, or Unix seconds) as ``2026-12-02T06:06:27.123456Z``."""
    dt = datetime.fromtimestamp(when, UTC) if isinstance(when, int | float) else when
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    """An ISO-8601 time as an aware datetime (naive means UTC); None for empty or bad text."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
