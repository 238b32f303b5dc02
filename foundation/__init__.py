"""foundation: what every crashfleet package stands on — settings, errors, lifecycle, logging.

The bottom layer beside the dump library (``vmcore``): it imports no other crashfleet package.

- :mod:`foundation.settings` — every setting declared once (TOML + ``CRASHFLEET_*``).
- :mod:`foundation.errors` — the one error vocabulary: :class:`~foundation.errors.CrashfleetError`
  and :func:`~foundation.errors.is_retryable`.
- :mod:`foundation.lifecycle` — signal handling for clean stops.
- :mod:`foundation.logs` — structlog configured once, stdlib records through the same renderer.
"""

__version__ = "0.1.0"
