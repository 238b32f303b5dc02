"""``crashfleet stack up|status|down``: the local Kafka + S3 + PostgreSQL stack."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from crashfleet.cli import App

__all__ = ["register"]


def _default_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "crashfleet" / "stack"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``stack`` command group."""
    p = sub.add_parser("stack", help="start, inspect or stop a local Kafka + S3 + PostgreSQL")
    ssub = p.add_subparsers(dest="stack_command", metavar="SUBCOMMAND")
    ssub.required = True
    for name, func, help_text in (
        ("up", _up, "start the services on loopback and wait until they answer"),
        ("status", _status, "show which services run and answer"),
        ("down", _down, "stop exactly the processes 'up' started"),
    ):
        sp = ssub.add_parser(name, help=help_text)
        sp.add_argument("--dir", type=Path, default=_default_dir(),
                        help="stack directory: data, logs and state (default: %(default)s)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "up":
            sp.add_argument("--postgres-dsn", help="use this PostgreSQL server")
            sp.add_argument("--no-local-postgres", action="store_true",
                            help="do not use a server on 127.0.0.1:5432; start a throwaway one")
            sp.add_argument("--timeout", type=float, default=90.0,
                            help="seconds to wait for the services (default: %(default)s)")
        sp.set_defaults(func=func)


def _up(args: argparse.Namespace, app: App) -> int:
    from crashfleet.stack import Stack

    stack = Stack(args.dir, postgres_dsn=args.postgres_dsn,
                  use_local_postgres=not args.no_local_postgres)
    info = stack.up(timeout=args.timeout)
    bucket = _create_bucket(app, info.s3_endpoint)
    if args.json:
        print(info.to_json())
        return 0
    print(f"stack up in {info.root}")
    print(f"  kafka     {info.kafka_bootstrap}")
    print(f"  s3        {info.s3_endpoint}")
    print(f"  postgres  {info.postgres_dsn}  ({info.postgres_source})")
    print("environment for crashfleet:")
    print(f"  export CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS={info.kafka_bootstrap}")
    print(f"  export CRASHFLEET_S3_ENDPOINT_URL={info.s3_endpoint}")
    print(f"  export CRASHFLEET_S3_BUCKET={bucket} CRASHFLEET_S3_ADDRESSING_STYLE=path")
    store_url = info.postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    print(f"  export CRASHFLEET_STORE_URL={store_url}")
    return 0


def _create_bucket(app: App, endpoint: str) -> str:
    """Create the configured bucket (s3.bucket) on the stack's S3 server, so the first
    upload does not meet a missing bucket; returns its name."""
    from ingest.s3 import S3ObjectStore

    # The local SeaweedFS accepts any signed request; boto3 still needs something to sign
    # with when the environment has no credentials.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "crashfleet-local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "crashfleet-local")
    bucket = app.settings().s3.bucket
    S3ObjectStore(bucket, endpoint_url=endpoint, addressing_style="path").ensure_bucket()
    return bucket


def _status(args: argparse.Namespace, app: App) -> int:
    from crashfleet.stack import Stack

    status = Stack(args.dir).status()
    if args.json:
        print(json.dumps(status, indent=2))
    elif not status["running"]:
        print(f"no stack running in {status['root']}")
    else:
        print(f"stack in {status['root']}")
        for name in ("kafka", "s3", "postgres"):
            entry = status[name]
            assert isinstance(entry, dict)
            where = entry.get("bootstrap") or entry.get("endpoint") or entry.get("dsn")
            print(f"  {name:9} {where}  {'answers' if entry['answers'] else 'NOT ANSWERING'}")
        procs = status["processes"]
        assert isinstance(procs, dict)
        for name, p in procs.items():
            print(f"  process {name} pid {p['pid']} {'alive' if p['alive'] else 'gone'}")
    return 0 if status["running"] else 1


def _down(args: argparse.Namespace, app: App) -> int:
    from crashfleet.stack import Stack

    stopped = Stack(args.dir).down()
    if args.json:
        print(json.dumps({"stopped": stopped}))
    else:
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0
