"""The one backoff formula: exponential from ``initial_s``, capped at ``max_s``."""

from __future__ import annotations

__all__ = ["backoff_s"]


def backoff_s(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry): ``initial_s``
    doubled per attempt, never more than ``max_s`` (the exponent is capped so it can't
    overflow)."""
    return min(max_s, initial_s * 2 ** min(max(attempt, 0), 30))
