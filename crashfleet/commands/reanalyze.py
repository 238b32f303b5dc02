"""``crashfleet reanalyze``: analyze stored crashes again (symbols arrived late, signature
rules changed, a decoder fix) through the reprocessing topic."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from crashfleet.cli import App
from foundation.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``reanalyze``."""
    p = sub.add_parser(
        "reanalyze", help="re-analyze stored crashes through the reprocessing topic",
        description="Publish a re-analysis request for each stored crash selected to "
        "kafka.topic_reanalyze; 'crashfleet analyzer --reanalysis' workers (or 'crashfleet "
        "run') analyze the dump again and move the crash to its new signature and cluster, "
        "exactly once per request, keeping its history. Normal traffic never waits behind.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--build-id", metavar="X", help="crashes of this kernel build")
    which.add_argument("--cluster", metavar="ID", help="crashes of this cluster")
    which.add_argument("--since", metavar="T", help="crashes analyzed at or after T (ISO 8601)")
    which.add_argument("--all", action="store_true", help="every stored crash")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="the embedded pipeline's data directory (crashfleet run --data); "
                   "default: the store, S3 and Kafka from the settings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_reanalyze)


def _adapters(args: argparse.Namespace, app: App) -> tuple[Any, Any, Any]:
    """(store, object store, producer) for the embedded data directory or the fleet."""
    from store import CrashStore

    settings = app.settings()
    if args.data is not None:
        from ingest.embedded_log import EmbeddedLog, EmbeddedProducer
        from ingest.localstore import LocalObjectStore

        if not (args.data / "crashfleet.sqlite").is_file():
            raise UsageError(f"no store in {args.data} (is --data the directory given to "
                             "crashfleet run?)")
        store = CrashStore(f"sqlite:///{(args.data / 'crashfleet.sqlite').resolve()}")
        return (store, LocalObjectStore(args.data / "objects"),
                EmbeddedProducer(EmbeddedLog(args.data / "events.sqlite")))
    from ingest.kafka import KafkaProducer, kafka_client_options
    from ingest.s3 import S3ObjectStore

    return (CrashStore(settings.store.url), S3ObjectStore.from_settings(settings.s3),
            KafkaProducer(**kafka_client_options(settings.kafka)))


def _reanalyze(args: argparse.Namespace, app: App) -> int:
    from analyzer.reanalysis import publish_requests
    from analyzer.service import REANALYZE_HEADER
    from foundation.timefmt import parse_iso
    from store.history import select_for_reanalysis

    since = None
    if args.since:
        since = parse_iso(args.since)
        if since is None:
            raise UsageError(f"--since {args.since!r} is not an ISO 8601 time")
    settings = app.settings()
    store, objects, producer = _adapters(args, app)
    try:
        store.migrate()
        targets = select_for_reanalysis(store, build_id=args.build_id,
                                        cluster_id=args.cluster, since=since,
                                        everything=args.all)
        counts = publish_requests(
            targets, objects=objects, producer=producer,
            topic=settings.kafka.topic_reanalyze, request_id=uuid.uuid4().hex,
            report_suffix=settings.analyzer.report_suffix, header=REANALYZE_HEADER)
    finally:
        producer.close()
        store.dispose()
    if args.json:
        json.dump(counts, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"requested re-analysis of {counts['published']} crashes "
              f"(request {counts['request_id']})"
              + (f"; {counts['missing']} without a stored dump" if counts["missing"] else ""))
    return 0
