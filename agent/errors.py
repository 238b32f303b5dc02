"""Errors of the host agent.

Retryable errors (S3 or Kafka unreachable) leave a dump queued for a later attempt with
backoff; permanent ones (a symlink, a foreign owner, an unreadable file) are recorded once and
reported, never retried in a loop.
"""

from __future__ import annotations

from foundation.errors import CrashfleetError

__all__ = ["AgentError", "DumpChanged", "DumpRefused", "JournalUnwritable", "PermanentAgentError"]


class AgentError(CrashfleetError):
    """Base of the agent's errors; ``path`` names the dump involved when there is one."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class DumpChanged(AgentError):
    """The file changed while it was being read (still being written?): retry later."""

    retryable = True


class JournalUnwritable(AgentError):
    """The journal could not be written (its file system full, an I/O error, locked): nothing
    was recorded; the agent waits and tries the same step again."""

    retryable = True


class PermanentAgentError(AgentError):
    """Retrying will not help."""


class DumpRefused(PermanentAgentError):
    """The agent will not read this file (symlink, wrong owner, not a regular file)."""

    def __init__(self, reason: str, *, path: str):
        self.reason = reason
        super().__init__(f"refused: {reason}", path=path)
