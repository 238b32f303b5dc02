"""``crashfleet web``: the triage web UI and JSON API."""

from __future__ import annotations

import argparse
from pathlib import Path

from crashfleet.cli import App

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``web``."""
    p = sub.add_parser(
        "web", help="serve the triage web UI and JSON API",
        description="Serve the crash clusters, crashes and hosts as web pages and JSON "
        "(/api/v1). Store from [store] and reports/dumps from [s3], or an embedded run's "
        "data directory with --data.")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="an embedded run's data directory (crashfleet run --data DIR)")
    p.add_argument("--host", help="listen address (default: web.host, loopback)")
    p.add_argument("--port", type=int, help="listen port (default: web.port)")
    p.set_defaults(func=_web)


def _web(args: argparse.Namespace, app: App) -> int:
    from crashfleet.wiring.web import build_web_app, serve_web

    settings = app.settings()
    host = args.host or settings.web.host
    port = settings.web.port if args.port is None else args.port
    web_app = build_web_app(settings, data=args.data)
    print(f"web: http://{host}:{port}/", flush=True)
    serve_web(web_app, host, port)
    return 0
