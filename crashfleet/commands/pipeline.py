"""``crashfleet analyzer``, ``clusters``, ``crashes`` and ``run`` (the embedded pipeline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crashfleet.cli import App

if TYPE_CHECKING:
    from store import CrashStore

__all__ = ["register_analyzer", "register_clusters", "register_crashes", "register_run"]


def register_analyzer(sub: argparse._SubParsersAction) -> None:
    """Add ``analyzer``: a worker of the analyzer consumer group."""
    p = sub.add_parser(
        "analyzer", help="analyze crash-reported events from Kafka (one consumer-group worker)",
        description="Consume crash-reported events, analyze each dump from S3 with ranged "
        "reads, sign, cluster and store it, and publish crash-analyzed events.")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="exit after SECONDS without events (batch use and tests)")
    p.add_argument("--reanalysis", action="store_true",
                   help="consume re-analysis requests (kafka.topic_reanalyze, crashfleet "
                   "reanalyze) in their own consumer group instead of new crashes")
    p.set_defaults(func=_analyzer)


def register_clusters(sub: argparse._SubParsersAction) -> None:
    """Add ``clusters``: the cluster table from the store."""
    p = sub.add_parser("clusters", help="list crash clusters from the store")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="an embedded run's data directory instead of the [store] setting")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(func=_clusters)


def register_crashes(sub: argparse._SubParsersAction) -> None:
    """Add ``crashes``: the crashes of one cluster."""
    p = sub.add_parser("crashes", help="list the crashes of a cluster")
    p.add_argument("--cluster", required=True, metavar="ID", help="cluster id")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="an embedded run's data directory instead of the [store] setting")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_crashes)


def register_run(sub: argparse._SubParsersAction) -> None:
    """Add ``run``: the whole pipeline embedded in one process."""
    p = sub.add_parser(
        "run", help="the embedded pipeline: spool -> agent -> analyzer -> store -> /metrics",
        description="Run agent and analyzer in one process on one machine: a spool directory "
        "(dumps directly in it or in per-host subdirectories), a local-directory object "
        "store, an embedded event log and SQLite, with /metrics.")
    p.add_argument("--spool", type=Path, required=True, help="directory watched for dumps")
    p.add_argument("--data", type=Path, required=True,
                   help="directory for objects, the event log, the journal and the store")
    p.add_argument("--once", action="store_true",
                   help="process everything present, print the cluster table and exit")
    p.add_argument("--metrics-port", type=int,
                   help="serve /metrics on this port (default: analyzer.metrics_port; 0: off)")
    p.add_argument("--web-port", type=int, default=0,
                   help="serve the web UI on this loopback port beside /metrics (0: off)")
    p.set_defaults(func=_run)


def _store(app: App, data: Path | None = None) -> CrashStore:
    from store import CrashStore

    if data is not None:
        from crashfleet.wiring.web import data_store

        if not (data / "crashfleet.sqlite").is_file():
            from foundation.errors import UsageError

            raise UsageError(f"{data} holds no crashfleet.sqlite (crashfleet run --data DIR)")
        store = data_store(data)
    else:
        from crashfleet.wiring.transport import store_url

        store = CrashStore(store_url(app.settings().store))
    store.migrate()
    return store


def _analyzer(args: argparse.Namespace, app: App) -> int:
    from crashfleet.wiring.analyzer import run_analyzer

    return run_analyzer(app.settings(), exit_when_idle=args.exit_when_idle,
                        reanalysis=args.reanalysis)


def _clusters(args: argparse.Namespace, app: App) -> int:
    from crashfleet.termviews import cluster_table, clusters_json

    store = _store(app, args.data)
    rows = store.clusters(limit=args.limit)
    if args.json:
        json.dump(clusters_json(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(cluster_table(rows))
    return 0


def _crashes(args: argparse.Namespace, app: App) -> int:
    from crashfleet.termviews import crash_table, crashes_json
    from foundation.text import term_safe

    store = _store(app, args.data)
    rows = store.crashes(args.cluster, limit=args.limit)
    if args.json:
        json.dump(crashes_json(rows), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print(f"no crashes in cluster {term_safe(args.cluster)}")
        return 1
    sys.stdout.write(crash_table(rows))
    return 0


def _run(args: argparse.Namespace, app: App) -> int:
    from crashfleet.wiring.embedded import run_embedded

    settings = app.settings()
    port = settings.analyzer.metrics_port if args.metrics_port is None else args.metrics_port
    return run_embedded(settings, spool=args.spool, data=args.data, once=args.once,
                        metrics_port=port, web_port=args.web_port)
