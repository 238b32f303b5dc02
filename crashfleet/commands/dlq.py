"""``crashfleet dlq list|show|replay``: inspect the dead-letter topic and re-enter its events
into the pipeline (idempotent: the store keys crashes by event id)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crashfleet.cli import App
from foundation.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dlq`` with ``list``, ``show`` and ``replay``."""
    p = sub.add_parser("dlq", help="list, show and replay dead-lettered events",
                       description="Dead letters are events that can never be analyzed as "
                       "they are (malformed, truncated or hostile dumps, decoder bugs); "
                       "outages never dead-letter. Replay re-publishes the original events "
                       "to the crash-reported topic once the cause is fixed; the store keys "
                       "crashes by event id, so nothing is stored twice. Replay marks the "
                       "failure rows it re-published (when, how many times); a later store "
                       "of the event resolves its row.")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    for name, help_ in (("list", "dead letters, the latest per event, oldest first"),
                        ("show", "one dead letter in full"),
                        ("replay", "re-publish dead-lettered events to crash-reported")):
        q = dsub.add_parser(name, help=help_)
        if name == "show":
            q.add_argument("key", help="event id or failure key (from dlq list)")
        else:
            q.add_argument("--since", metavar="T",
                           help="only those dead-lettered at or after T (ISO 8601 UTC)")
            q.add_argument("--reason", metavar="R",
                           help="only those whose reason contains R (case-insensitive)")
            q.add_argument("--not-replayed", action="store_true",
                           help="leave out those replayed before or stored since")
        if name == "replay":
            q.add_argument("--key", help="only this event id or failure key")
        q.add_argument("--data", type=Path, metavar="DIR",
                       help="the embedded pipeline's data directory (crashfleet run --data); "
                       "default: Kafka from the settings")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(func=_dlq)


@contextmanager
def _event_log(args: argparse.Namespace, app: App) -> Iterator[tuple[Any, Any]]:
    """(dead-letter consumer in a throwaway group that never commits, producer)."""
    k = app.settings().kafka
    group = f"crashfleet-dlq-{uuid.uuid4().hex[:12]}"
    if args.data is not None:
        from ingest.embedded_log import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer

        path = args.data / "events.sqlite"
        if not path.is_file():
            raise UsageError(f"no embedded event log at {path} (is --data the directory "
                             "given to crashfleet run?)")
        log = EmbeddedLog(path)
        consumer: Any = EmbeddedConsumer(log, group, [k.topic_dead_letter])
        producer: Any = EmbeddedProducer(log)
    else:
        from ingest.kafka import KafkaConsumer, KafkaProducer, kafka_client_options

        opts = kafka_client_options(k)
        consumer = KafkaConsumer(**opts, group_id=group, topics=[k.topic_dead_letter])
        producer = KafkaProducer(**opts)
    try:
        yield consumer, producer
    finally:
        consumer.close()
        producer.close()


def _dlq(args: argparse.Namespace, app: App) -> int:
    from analyzer.dead_letters import read_dead_letters, replay, select
    from crashfleet.commands.pipeline import _store
    from foundation.text import term_safe
    from foundation.timefmt import iso_utc, parse_iso
    from store.failures import FailureMarks, failure_marks, mark_replayed

    since = None
    if getattr(args, "since", None):
        since = parse_iso(args.since)
        if since is None:
            raise UsageError(f"--since {args.since!r} is not an ISO 8601 time")
    key = args.key if args.dlq_command == "show" else getattr(args, "key", None)
    store = _store(app, args.data)
    try:
        with _event_log(args, app) as (consumer, producer):
            entries = select(read_dead_letters(consumer), since=since,
                             reason=getattr(args, "reason", None), key=key)
            marks = failure_marks(store, [e.key for e in entries])
            if getattr(args, "not_replayed", False):
                entries = [e for e in entries if e.key not in marks or not (
                    marks[e.key].replays or marks[e.key].resolved_at)]
            if args.dlq_command == "replay":
                n = replay(entries, producer, app.settings().kafka.topic_crash_reported)
                mark_replayed(store, [e.key for e in entries])
    finally:
        store.dispose()
    if args.dlq_command == "replay":
        if args.json:
            json.dump({"replayed": [e.key for e in entries]}, sys.stdout)
            sys.stdout.write("\n")
        else:
            print(f"replayed {n} dead-lettered event{'s' if n != 1 else ''}")
        return 0
    if args.dlq_command == "show" and not entries:
        print(f"no dead letter {term_safe(args.key)}", file=sys.stderr)
        return 1
    none = FailureMarks("", 0, None, None)
    rows = [{"key": e.key, "event_id": e.event_id, "dead_lettered_at": iso_utc(e.at),
             "attempts": e.attempts, "reason": e.reason, "source": e.source,
             "bytes": len(e.record.value), "replays": m.replays,
             "replayed_at": iso_utc(m.replayed_at) if m.replayed_at else None,
             "resolved_at": iso_utc(m.resolved_at) if m.resolved_at else None}
            for e in entries for m in (marks.get(e.key, none),)]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.dlq_command == "show":
        for name, value in rows[0].items():
            print(f"{name:17} {term_safe(str(value))}")
    else:
        for r in rows:
            state = (f"stored {r['resolved_at']}  " if r["resolved_at"] else "") + (
                f"replayed {r['replays']}x, last {r['replayed_at']}  " if r["replays"] else "")
            print(f"{r['dead_lettered_at']}  {term_safe(str(r['key']))}  {state}"
                  f"{term_safe(str(r['reason']))[:100]}")
        print(f"{len(rows)} dead letter{'s' if len(rows) != 1 else ''}")
    return 0
