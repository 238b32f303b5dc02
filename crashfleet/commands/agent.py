"""``crashfleet agent``: watch crash directories and ship dumps to S3 + Kafka."""

from __future__ import annotations

import argparse

from crashfleet.cli import App

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``agent`` command."""
    p = sub.add_parser(
        "agent", help="watch crash directories; ship each finished dump to S3 and announce it",
        description="Watch the configured crash directories (agent.watch_dirs), upload every "
        "finished dump to S3 and publish a crash-reported event to Kafka.",
    )
    p.add_argument("--once", action="store_true",
                   help="scan, ship everything finished, wait for the events to be "
                        "acknowledged, and exit (0 when everything was shipped)")
    p.add_argument("--watch", action="append", metavar="DIR",
                   help="watch DIR instead of agent.watch_dirs (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, app: App) -> int:
    import dataclasses

    from crashfleet.wiring.agent import build_agent, run_agent

    settings = app.settings()
    if args.watch:
        settings = dataclasses.replace(
            settings, agent=dataclasses.replace(settings.agent, watch_dirs=tuple(args.watch)))
    agent = build_agent(settings)
    return run_agent(agent, settings, once=args.once)
