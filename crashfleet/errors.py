"""Errors of the application shell, mapped to exit codes by the CLI."""

__all__ = ["ConfigError", "CrashfleetError", "UsageError"]


class CrashfleetError(Exception):
    """Base of the shell's errors; the CLI exits 1 on it."""

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
