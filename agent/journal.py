"""The agent's journal: one SQLite file recording every dump's progress and the event outbox.

It is what makes the agent restartable without losing or duplicating anything: a dump's
SHA-256, multipart upload id and finished parts survive a crash (so the upload resumes), and
an event is written to the outbox in the same transaction that marks its dump uploaded (so
it is sent, in order, whenever Kafka is reachable, exactly once from the agent's side).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import JournalUnwritable
from ingest.objectstore import PartInfo

__all__ = ["DumpRow", "Journal", "OutboxRow", "State"]

State = Literal["pending", "uploading", "uploaded", "announced", "failed", "refused"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dumps (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    layout TEXT NOT NULL, dmesg_path TEXT, crash_time_hint TEXT, host TEXT,
    state TEXT NOT NULL,
    sha256 TEXT, key TEXT, upload_id TEXT, part_size INTEGER, parts TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT, detected_at REAL NOT NULL, shipped_at REAL, removed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (path, dev, ino, size, mtime_ns));
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dump_id INTEGER NOT NULL REFERENCES dumps(id),
    event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, key BLOB, payload BLOB NOT NULL,
    created_at REAL NOT NULL, sent_at REAL, attempts INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True)
class DumpRow:
    """A dump as the journal knows it. ``size`` in bytes, times in epoch seconds."""

    id: int
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    layout: str
    dmesg_path: str | None
    crash_time_hint: str | None
    host: str | None
    state: State
    sha256: str | None
    key: str | None
    upload_id: str | None
    part_size: int | None
    parts: tuple[PartInfo, ...]
    attempts: int
    next_attempt: float
    last_error: str | None
    detected_at: float
    shipped_at: float | None
    removed: bool


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    dump_id: int
    event_id: str
    topic: str
    key: bytes | None
    payload: bytes
    attempts: int


def _name(path: str | None) -> str | bytes | None:
    """A path as SQLite can store it: text when it is valid UTF-8, else its exact bytes.

    A file name is bytes (any but NUL and ``/``): one that is not UTF-8 reaches Python with
    surrogate escapes, which SQLite's text cannot hold. Its bytes go into a BLOB instead (a
    BLOB never equals a TEXT, so the two spellings cannot collide); journals written before
    keep working, their names were all text."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _text(message: str) -> str:
    """A message for a TEXT column: a surrogate-escaped name in it becomes ``\\udcff``."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _unname(value: str | bytes | None) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _unname_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _row(r: sqlite3.Row) -> DumpRow:
    parts = tuple(PartInfo(number=p[0], size=p[1], etag=p[2]) for p in json.loads(r["parts"]))
    return DumpRow(
        id=r["id"], path=_unname_path(r["path"]), dev=r["dev"], ino=r["ino"], size=r["size"],
        mtime_ns=r["mtime_ns"], layout=r["layout"], dmesg_path=_unname(r["dmesg_path"]),
        crash_time_hint=r["crash_time_hint"], host=_unname(r["host"]), state=r["state"],
        sha256=r["sha256"],
        key=r["key"], upload_id=r["upload_id"], part_size=r["part_size"], parts=parts,
        attempts=r["attempts"], next_attempt=r["next_attempt"], last_error=r["last_error"],
        detected_at=r["detected_at"], shipped_at=r["shipped_at"], removed=bool(r["removed"]),
    )


class Journal:
    """The journal file at ``path`` (created with its directory when missing)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``JournalUnwritable`` when SQLite cannot write (a full file
        system, an I/O error, a lock held too long) — nothing of it is recorded."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may leave the transaction open (SQLite rolls back on a full
                # disk only sometimes): without this every later BEGIN would fail too.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise JournalUnwritable(
                f"agent.state_dir {str(self.path.parent)!r}: cannot write the agent's journal "
                f"({exc}); free space on that file system or make it writable") from exc

    def close(self) -> None:
        self._db.close()

    # -- dumps --------------------------------------------------------------------------------

    def find(self, path: str, dev: int, ino: int, size: int, mtime_ns: int) -> DumpRow | None:
        r = self._db.execute(
            "SELECT * FROM dumps WHERE path=? AND dev=? AND ino=? AND size=? AND mtime_ns=?",
            (_name(path), dev, ino, size, mtime_ns),
        ).fetchone()
        return None if r is None else _row(r)

    def get(self, dump_id: int) -> DumpRow:
        r = self._db.execute("SELECT * FROM dumps WHERE id=?", (dump_id,)).fetchone()
        if r is None:
            raise KeyError(dump_id)
        return _row(r)

    def add(self, path: str, dev: int, ino: int, size: int, mtime_ns: int, layout: str,
            dmesg_path: str | None = None, crash_time_hint: str | None = None,
            host: str | None = None) -> tuple[DumpRow, bool]:
        """Record a detected dump (once); returns its row and whether it was new."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO dumps (path, dev, ino, size, mtime_ns, layout, dmesg_path, "
                "crash_time_hint, host, state, detected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_name(path), dev, ino, size, mtime_ns, layout, _name(dmesg_path),
                 crash_time_hint, _name(host),
                 "pending", time.time()),
            )
            new = cur.rowcount == 1
        found = self.find(path, dev, ino, size, mtime_ns)
        assert found is not None
        return found, new

    def due(self, now: float) -> list[DumpRow]:
        """Dumps still to upload whose retry time has come, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM dumps WHERE state IN ('pending', 'uploading', 'failed') "
            "AND next_attempt<=? ORDER BY id", (now,),
        ).fetchall()
        return [_row(r) for r in rows]

    def by_state(self, *states: State) -> list[DumpRow]:
        marks = ",".join("?" * len(states))
        rows = self._db.execute(f"SELECT * FROM dumps WHERE state IN ({marks}) ORDER BY id",
                                states).fetchall()
        return [_row(r) for r in rows]

    def set_hash(self, dump_id: int, sha256: str, key: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE dumps SET sha256=?, key=? WHERE id=?", (sha256, key, dump_id))

    def start_upload(self, dump_id: int, upload_id: str, part_size: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE dumps SET state='uploading', upload_id=?, part_size=?, parts='[]' "
                "WHERE id=?", (upload_id, part_size, dump_id),
            )

    def add_part(self, dump_id: int, part: PartInfo) -> None:
        with self._tx() as db:
            (raw,) = db.execute("SELECT parts FROM dumps WHERE id=?", (dump_id,)).fetchone()
            parts = {p[0]: p for p in json.loads(raw)}
            parts[part.number] = [part.number, part.size, part.etag]
            db.execute("UPDATE dumps SET parts=? WHERE id=?",
                       (json.dumps(sorted(parts.values())), dump_id))

    def set_parts(self, dump_id: int, parts: tuple[PartInfo, ...]) -> None:
        with self._tx() as db:
            db.execute("UPDATE dumps SET parts=? WHERE id=?",
                       (json.dumps([[p.number, p.size, p.etag] for p in parts]), dump_id))

    def fail(self, dump_id: int, error: str, retry_at: float, *, permanent: bool = False) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE dumps SET state=?, last_error=?, attempts=attempts+1, next_attempt=? "
                "WHERE id=?",
                ("refused" if permanent else "failed", _text(error[:2000]), retry_at, dump_id),
            )

    def refuse(self, path: str, reason: str) -> None:
        """Record a file the agent will not ship (a symlink, a foreign owner) once."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO dumps (path, dev, ino, size, mtime_ns, layout, state, "
                "last_error, detected_at) VALUES (?, 0, 0, 0, 0, 'refused', 'refused', ?, ?)",
                (_name(path), _text(reason), time.time()),
            )

    def is_refused(self, path: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM dumps WHERE path=? AND state='refused' AND dev=0", (_name(path),)
        ).fetchone() is not None

    def mark_uploaded(self, dump_id: int, event_id: str, topic: str, key: bytes | None,
                      payload: bytes) -> None:
        """The dump is stored: record it and queue its event, in one transaction."""
        with self._tx() as db:
            db.execute("UPDATE dumps SET state='uploaded', last_error=NULL WHERE id=?",
                       (dump_id,))
            db.execute(
                "INSERT OR IGNORE INTO outbox (dump_id, event_id, topic, key, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (dump_id, event_id, topic, key, payload, time.time()),
            )

    def supersede(self, dump_id: int, reason: str) -> None:
        """The file no longer matches this row (rewritten or gone): stop working on it."""
        with self._tx() as db:
            db.execute("UPDATE dumps SET state='refused', last_error=? WHERE id=?",
                       (_text(reason), dump_id))

    def mark_removed(self, dump_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE dumps SET removed=1 WHERE id=?", (dump_id,))

    # -- outbox -------------------------------------------------------------------------------

    def unsent(self, limit: int = 100) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT seq, dump_id, event_id, topic, key, payload, attempts FROM outbox "
            "WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (limit,),
        ).fetchall()
        return [OutboxRow(seq=r[0], dump_id=r[1], event_id=r[2], topic=r[3], key=r[4],
                          payload=bytes(r[5]), attempts=r[6]) for r in rows]

    def mark_sent(self, seqs: list[int]) -> None:
        now = time.time()
        with self._tx() as db:
            for seq in seqs:
                (dump_id,) = db.execute("SELECT dump_id FROM outbox WHERE seq=?",
                                        (seq,)).fetchone()
                db.execute("UPDATE outbox SET sent_at=? WHERE seq=?", (now, seq))
                db.execute("UPDATE dumps SET state='announced', shipped_at=? WHERE id=?",
                           (now, dump_id))

    def note_send_failure(self, seqs: list[int]) -> None:
        with self._tx() as db:
            for seq in seqs:
                db.execute("UPDATE outbox SET attempts=attempts+1 WHERE seq=?", (seq,))

    def counts(self) -> dict[str, int]:
        """Dumps per state plus ``outbox`` (unsent events)."""
        out = {s: 0 for s in ("pending", "uploading", "uploaded", "announced", "failed",
                              "refused")}
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM dumps GROUP BY state"):
            out[state] = n
        (out["outbox"],) = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return out
