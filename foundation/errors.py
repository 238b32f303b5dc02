"""The one error vocabulary of crashfleet.

Every error the pipeline can meet says whether a retry can help, with one class attribute,
``retryable``: the analyzer worker (retry later vs dead-letter), the agent (back off vs refuse)
and the CLI exit code read that one thing, through :func:`is_retryable`.

Each package has its own ``errors.py`` whose base class derives from :class:`CrashfleetError`
and whose retryable branch sets ``retryable = True``. The dump library (``vmcore``) stands on
its own and imports nothing of ours, so its :class:`vmcore.errors.AnalyzerError` carries the same
attribute without deriving from this class; :func:`is_retryable` reads either.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CrashfleetError", "UsageError", "is_retryable"]


class CrashfleetError(Exception):
    """Base of crashfleet's errors. ``retryable``: the same call may succeed later (an outage);
    ``exit_code``: what the CLI exits with (1 failure, 2 usage or configuration)."""

    retryable = False
    exit_code = 1


class UsageError(CrashfleetError):
    """Wrong command-line usage; exit code 2."""

    exit_code = 2


class ConfigError(CrashfleetError):
    """A configuration file or environment override is invalid; exit code 2.

    ``key`` is the dotted setting name (``kafka.bootstrap_servers``) when one is to blame.
    """

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key = key
        self.source = source
        super().__init__(message)


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the failed call later can help: the error's ``retryable`` attribute
    (False for anything that does not declare it: an unknown error is not an outage)."""
    return bool(getattr(exc, "retryable", False))
