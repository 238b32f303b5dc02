"""``crashfleet config check|docs``."""

from __future__ import annotations

import argparse
import json
import sys

from crashfleet.cli import App

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``config`` command group."""
    p = sub.add_parser("config", help="check the configuration or print its reference")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    csub.required = True

    check = csub.add_parser(
        "check",
        help="validate a settings file and print the effective settings (secrets redacted)",
    )
    check.add_argument("file", nargs="?", help="file to check (default: the --config file)")
    check.add_argument("--json", action="store_true", help="print the settings as JSON")
    check.set_defaults(func=_check, no_logging_setup=True)

    docs = csub.add_parser("docs", help="print the configuration reference (Markdown)")
    docs.set_defaults(func=_docs, no_logging_setup=True)


def _check(args: argparse.Namespace, app: App) -> int:
    from pathlib import Path

    from foundation.settings import load_settings, redacted

    if args.file:
        settings = load_settings(Path(args.file), require_file=True)
        source = args.file
    else:
        settings = app.settings()
        source = str(app.config_path)
    data = redacted(settings)
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    print(f"# effective settings from {source} and CRASHFLEET_* overrides (secrets redacted)")
    for section, values in data.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    return 0


def _docs(args: argparse.Namespace, app: App) -> int:
    from foundation.settings import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0
