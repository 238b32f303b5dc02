"""The embedded event log: Kafka's semantics in one SQLite file, for a single machine.

Topics have partitions; records get dense offsets per partition; consumer groups commit
offsets; a group's live members split the partitions (range assignment over members sorted
by id, recomputed whenever membership changes, as a rebalance). A member is live while it
polls within ``session_timeout_s``. Delivery is at-least-once, exactly as with Kafka: after a
rebalance or restart a member resumes at the group's committed offset.

Several processes may share the file (WAL mode, busy timeout). SQLite is stdlib, so the
embedded default needs no service.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ingest.errors import PermanentIngestError
from ingest.eventlog import Record, TopicPartition

__all__ = ["EmbeddedAdmin", "EmbeddedConsumer", "EmbeddedLog", "EmbeddedProducer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, member TEXT NOT NULL, topics TEXT NOT NULL, seen_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, member)) WITHOUT ROWID;
"""

DEFAULT_PARTITIONS = 4
_NEXT_OFFSET = "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic=? AND partition=?"


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmbeddedLog:
    """One SQLite file holding every topic; open it once per process and share it."""

    def __init__(self, path: Path | str, *, default_partitions: int = DEFAULT_PARTITIONS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default_partitions = default_partitions
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # idempotent; executescript manages its own commit

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged record survives a crash
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *_: object) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _tx(self) -> EmbeddedLog._Tx:
        return EmbeddedLog._Tx(self._db())

    def partitions(self, topic: str) -> int | None:
        row = self._db().execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class EmbeddedAdmin:
    """Topic administration on an :class:`EmbeddedLog`."""

    def __init__(self, log: EmbeddedLog):
        self._log = log

    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        with self._log._tx() as db:
            for name, n in partitions.items():
                if n < 1:
                    raise PermanentIngestError(f"topic {name!r}: partitions must be >= 1")
                db.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (name, n))

    def close(self) -> None:
        pass


class EmbeddedProducer:
    """Appends records; each ``send`` is durable once ``flush`` returns."""

    def __init__(self, log: EmbeddedLog):
        self._log = log
        self._pending: list[tuple[str, bytes, bytes | None, Sequence[tuple[str, bytes]]]] = []
        self._rr = 0

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self._pending.append((topic, value, key, tuple(headers)))

    def flush(self, timeout_s: float | None = None) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        with self._log._tx() as db:
            for topic, value, key, headers in pending:
                row = db.execute(
                    "SELECT partitions FROM topics WHERE name=?", (topic,)
                ).fetchone()
                if row is None:
                    n = self._log.default_partitions
                    db.execute("INSERT INTO topics VALUES (?, ?)", (topic, n))
                else:
                    n = int(row[0])
                if key is None:
                    part = self._rr % n
                    self._rr += 1
                else:
                    part = zlib.crc32(key) % n
                (nxt,) = db.execute(_NEXT_OFFSET, (topic, part)).fetchone()
                db.execute(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, part, nxt, key, value,
                     json.dumps([[k, v.hex()] for k, v in headers]), _now_ms()),
                )

    def close(self) -> None:
        self.flush()


class EmbeddedConsumer:
    """A member of consumer group ``group_id`` subscribed to ``topics``."""

    def __init__(self, log: EmbeddedLog, group_id: str, topics: Sequence[str], *,
                 session_timeout_s: float = 10.0, auto_offset_reset: str = "earliest",
                 member_id: str | None = None):
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(
                f"auto_offset_reset must be earliest or latest, not {auto_offset_reset!r}"
            )
        self._log = log
        self.group_id = group_id
        self.topics = tuple(topics)
        self.member_id = member_id or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._session_ms = int(session_timeout_s * 1000)
        self._reset = auto_offset_reset
        self._assigned: tuple[TopicPartition, ...] = ()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self._heartbeat()

    def _heartbeat(self) -> None:
        with self._log._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)",
                (self.group_id, self.member_id, json.dumps(self.topics), _now_ms()),
            )

    def _rebalance(self) -> None:
        """Recompute this member's share; on change, resume from committed offsets."""
        db = self._log._db()
        cutoff = _now_ms() - self._session_ms
        with self._log._tx() as tx:
            tx.execute("DELETE FROM members WHERE grp=? AND seen_ms<?", (self.group_id, cutoff))
        members = sorted(
            (m, set(json.loads(t)))
            for m, t in db.execute("SELECT member, topics FROM members WHERE grp=?",
                                   (self.group_id,))
        )
        mine: list[TopicPartition] = []
        for topic in self.topics:
            n = self._log.partitions(topic) or 0
            subscribers = [m for m, ts in members if topic in ts]
            if self.member_id not in subscribers or n == 0:
                continue
            idx, count = subscribers.index(self.member_id), len(subscribers)
            # Range assignment: contiguous blocks of partitions, larger blocks first.
            per, extra = divmod(n, count)
            start = idx * per + min(idx, extra)
            size = per + (1 if idx < extra else 0)
            mine.extend(TopicPartition(topic, p) for p in range(start, start + size))
        assigned = tuple(mine)
        if assigned != self._assigned:
            self._assigned = assigned
            self._positions = {tp: self._start_offset(tp) for tp in assigned}
            self._paused.clear()

    def _start_offset(self, tp: TopicPartition) -> int:
        db = self._log._db()
        row = db.execute(
            "SELECT offset FROM group_offsets WHERE grp=? AND topic=? AND partition=?",
            (self.group_id, tp.topic, tp.partition),
        ).fetchone()
        if row is not None:
            return int(row[0])
        if self._reset == "earliest":
            return 0
        (nxt,) = db.execute(_NEXT_OFFSET, (tp.topic, tp.partition)).fetchone()
        return int(nxt)

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        if self._closed:
            raise PermanentIngestError("poll on a closed consumer")
        deadline = time.monotonic() + timeout_s
        while True:
            self._heartbeat()
            self._rebalance()
            out = self._fetch(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _fetch(self, max_records: int) -> list[Record]:
        db = self._log._db()
        out: list[Record] = []
        for tp in self._assigned:
            if len(out) >= max_records:
                break
            if tp in self._paused:
                continue
            pos = self._positions[tp]
            rows = db.execute(
                "SELECT offset, key, value, headers, ts_ms FROM records "
                "WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
                (tp.topic, tp.partition, pos, max_records - len(out)),
            ).fetchall()
            for off, key, value, headers, ts in rows:
                out.append(Record(
                    topic=tp.topic, partition=tp.partition, offset=int(off), key=key,
                    value=bytes(value),
                    headers=tuple((k, bytes.fromhex(v)) for k, v in json.loads(headers)),
                    timestamp_ms=int(ts),
                ))
            if rows:
                self._positions[tp] = int(rows[-1][0]) + 1
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        todo = dict(self._positions if offsets is None else offsets)
        with self._log._tx() as db:
            for tp, off in todo.items():
                db.execute("INSERT OR REPLACE INTO group_offsets VALUES (?, ?, ?, ?)",
                           (self.group_id, tp.topic, tp.partition, int(off)))

    def committed(self, tp: TopicPartition) -> int | None:
        row = self._log._db().execute(
            "SELECT offset FROM group_offsets WHERE grp=? AND topic=? AND partition=?",
            (self.group_id, tp.topic, tp.partition),
        ).fetchone()
        return None if row is None else int(row[0])

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.update(tp for tp in partitions if tp in self._assigned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(partitions)

    def lag(self) -> int | None:
        db = self._log._db()
        total = 0
        for tp in self._assigned:
            (nxt,) = db.execute(_NEXT_OFFSET, (tp.topic, tp.partition)).fetchone()
            total += max(0, int(nxt) - self._positions.get(tp, 0))
        return total

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Leave the group at once so the others take over our partitions without waiting.
        with self._log._tx() as db:
            db.execute("DELETE FROM members WHERE grp=? AND member=?",
                       (self.group_id, self.member_id))
