"""``crashfleet store prune``: apply the store's retention by hand (the analyzer also does it
every ``store.prune_interval_s`` while ``store.retain_days`` is set)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from crashfleet.cli import App
from foundation.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``store`` with ``prune``."""
    p = sub.add_parser("store", help="maintain the crash store (retention)",
                       description="Maintenance of the crash store.")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    q = ssub.add_parser(
        "prune", help="delete crashes stored more than D days ago (clusters keep their totals)",
        description="Delete the crashes stored more than D days ago, in batches of "
        "store.prune_batch, with their re-analysis history and, if store.prune_objects is "
        "set, their dumps and reports in the object store. Clusters keep their counts, first "
        "and last seen and per-day counts. Safe to interrupt and to run again.")
    q.add_argument("--older-than", type=float, metavar="D",
                   help="days (default: store.retain_days)")
    q.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    q.add_argument("--data", type=Path, metavar="DIR",
                   help="an embedded run's data directory instead of the [store] setting")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_prune)


def _prune(args: argparse.Namespace, app: App) -> int:
    from crashfleet.commands.pipeline import _store
    from foundation.timefmt import iso_utc
    from store.retention import prune

    s = app.settings().store
    days = args.older_than if args.older_than is not None else s.retain_days
    if days <= 0:
        raise UsageError("nothing to prune: store.retain_days is 0 (crashes kept forever); "
                         "give --older-than D (days)")
    remover: Any = None
    if s.prune_objects:
        if args.data is not None:
            from ingest.localstore import LocalObjectStore

            remover = LocalObjectStore(args.data / "objects")
        else:
            from ingest.s3 import S3ObjectStore

            remover = S3ObjectStore.from_settings(app.settings().s3)
    store = _store(app, args.data)
    try:
        r = prune(store.engine, older_than=timedelta(days=days), remover=remover,
                  batch=s.prune_batch, dry_run=args.dry_run)
    finally:
        store.dispose()
    if args.json:
        json.dump({"cutoff": iso_utc(r.cutoff), "crashes": r.crashes, "objects": r.objects,
                   "batches": r.batches, "dry_run": args.dry_run}, sys.stdout)
        sys.stdout.write("\n")
    else:
        verb = "would prune" if args.dry_run else "pruned"
        print(f"{verb} {r.crashes} crash{'es' if r.crashes != 1 else ''} stored before "
              f"{iso_utc(r.cutoff)} and {r.objects} object{'s' if r.objects != 1 else ''}")
    return 0
