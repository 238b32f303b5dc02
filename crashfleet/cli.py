"""The ``crashfleet`` command.

The shell owns the CLI: one module per subcommand in ``crashfleet/commands/`` exposing
``register(subparsers) -> None`` and calling the packages' public functions; this module lists
those modules and dispatches. Handlers are
``(args, app) -> int``. Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 75 a
retryable error (an outage: ``foundation.errors.is_retryable``).

Only the module of the chosen subcommand is imported, so a quick local command does not pay
for Kafka, boto3 or SQLAlchemy imports it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from crashfleet import __version__
from foundation.errors import CrashfleetError, UsageError, is_retryable

if TYPE_CHECKING:
    from pathlib import Path

    from foundation.settings import Settings

__all__ = ["EX_TEMPFAIL", "App", "main"]

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; the same command may succeed later

# command name -> ("module[:function]" registering it, default function ``register``; one-line
# help). The module is imported only when the command is used or its own help is asked for.
_C = "crashfleet.commands."
COMMANDS: dict[str, tuple[str, str]] = {
    "config": (_C + "config", "check the configuration or print its reference"),
    "stack": (_C + "stack", "start, inspect or stop a local Kafka + S3 + PostgreSQL"),
    "agent": (_C + "agent", "watch crash directories; ship finished dumps to S3 and announce them"),
    "analyze": (_C + "analyze", "decode a dump: kernel log, oops, task, taint, modules"),
    "symbols": (_C + "symbols", "fetch, import, inspect and look up kernel debug symbol packs"),
    "signature": (_C + "signature", "a crash's title, signature and cluster, and why"),
    "analyzer": (_C + "pipeline:register_analyzer",
                 "analyze crash-reported events from Kafka (one consumer-group worker)"),
    "clusters": (_C + "pipeline:register_clusters", "list crash clusters from the store"),
    "crashes": (_C + "pipeline:register_crashes", "list the crashes of a cluster"),
    "run": (_C + "pipeline:register_run",
            "the embedded pipeline: spool -> agent -> analyzer -> store -> /metrics"),
    "web": (_C + "web", "serve the triage web UI and JSON API"),
    "dlq": (_C + "dlq", "list, show and replay dead-lettered events"),
    "reanalyze": (_C + "reanalyze", "re-analyze stored crashes through the reprocessing topic"),
    "store": (_C + "prune", "maintain the crash store: prune old crashes (retention)"),
}


class App:
    """What every handler receives: the parsed global options and lazily loaded settings."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._settings: Settings | None = None

    @property
    def config_path(self) -> Path:
        from pathlib import Path

        from foundation.settings import DEFAULT_CONFIG_PATH

        given = self.args.config or os.environ.get("CRASHFLEET_CONFIG")

        return Path(given) if given else DEFAULT_CONFIG_PATH

    @property
    def config_explicit(self) -> bool:
        return bool(self.args.config or os.environ.get("CRASHFLEET_CONFIG"))

    def settings(self) -> Settings:
        """The effective settings (file + environment), loaded and validated once."""
        if self._settings is None:
            from foundation.settings import load_settings

            self._settings = load_settings(self.config_path, require_file=self.config_explicit)
        return self._settings


Handler = Callable[[argparse.Namespace, App], int]


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil (and with it bz2, lzma and
    fnmatch): argparse builds a formatter for every option it registers, so the default one
    costs each command a few milliseconds of start-up even when no help is printed."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None):
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser using :class:`_Formatter`; subcommand parsers are of the same class
    (argparse makes them with ``type(parent)``), so they use it too."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _register(sub: argparse._SubParsersAction, name: str) -> None:
    target = COMMANDS[name][0]
    module_name, _, func = target.partition(":")
    getattr(importlib.import_module(module_name), func or "register")(sub)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only`` set, just that subcommand is registered (fast path)."""
    parser = _Parser(
        prog="crashfleet",
        # Subcommands have options like --log; a global --log-level must not swallow them.
        allow_abbrev=False,
        description="Collect kernel crash dumps from a fleet and turn them into clustered, "
        "alertable crash signatures.",
    )
    parser.add_argument("--version", action="version", version=f"crashfleet {__version__}")
    parser.add_argument(
        "--config", metavar="FILE",
        help="settings file (default: $CRASHFLEET_CONFIG or /etc/crashfleet/crashfleet.toml)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # With a command named, only its parser is built (the fast path): the others would only
    # be listed by --help, which names no command, and each parser costs start-up time.
    for name in COMMANDS if only is None else (only,):
        _register(sub, name)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, skipping global options; None if unclear."""
    it = iter(argv)
    for token in it:
        if token in ("--config", "--log-level", "--log-format"):
            next(it, None)
            continue
        if token.startswith("-"):
            continue
        return token if token in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_chosen_command(argv))
    args = parser.parse_args(argv)  # exits 2 on usage errors
    app = App(args)
    handler: Handler = args.func
    try:
        _configure_logging(args, app)
        return int(handler(args, app) or 0)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"crashfleet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CrashfleetError as exc:
        # The one vocabulary: an outage exits 75 (EX_TEMPFAIL, "try again later").
        print(f"crashfleet: error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if is_retryable(exc) else exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into a command that stopped reading (| head): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _configure_logging(args: argparse.Namespace, app: App) -> None:
    if getattr(args, "no_logging_setup", False):
        return
    from foundation.logs import configure_logging

    level = args.log_level
    fmt = args.log_format
    if level is None or fmt is None:
        try:
            log = app.settings().log
        except CrashfleetError:
            log = None  # the handler reports configuration errors itself
        level = level or (log.level if log else "info")
        fmt = fmt or (log.format if log else "auto")
    configure_logging(level, fmt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
