"""The agent's work loop: detect finished dumps, upload them, announce them, apply retention.

Every step is journaled first, so a restart (or a SIGKILL) resumes where the agent stopped:
uploads continue from their last acknowledged part, stored dumps whose events were not yet
acknowledged are announced, and announced dumps are never shipped again.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.announce import DumpKeys, crash_event
from agent.discovery import Candidate, is_open_for_writing, scan, scan_spool
from agent.errors import DumpRefused, JournalUnwritable
from agent.facts import DumpFacts, FactsReader
from agent.inotify import Inotify
from agent.journal import DumpRow, Journal
from agent.listing import Lister
from agent.metrics import AgentMetrics
from agent.retention import remove_dump, select_for_removal
from agent.safeopen import open_below, root_of
from agent.streamindex import StreamIndex, ship_index
from agent.upload import RateLimiter, Uploader
from foundation.backoff import backoff_s
from foundation.errors import CrashfleetError, is_retryable
from foundation.logs import LogThrottle
from foundation.text import name_text
from ingest.errors import RetryableIngestError
from ingest.eventlog import EventProducer
from ingest.events import HostIdentity
from ingest.objectstore import ObjectStore

__all__ = ["Agent", "AgentConfig"]

log = structlog.get_logger("crashfleet.agent")

MAX_DMESG_BYTES = 16 * 1024 * 1024  # a kernel log file larger than this is cut
_FLUSH_S = 5.0  # longest wait for Kafka to acknowledge one event


@dataclass(frozen=True)
class AgentConfig:
    """What the loop needs from the settings (``AgentSettings``, the only source of their
    defaults: built by ``crashfleet.wiring.agent.agent_config``); sizes in bytes."""

    watch_dirs: tuple[str, ...]
    content: str
    dumps_prefix: str
    part_size: int
    upload_concurrency: int
    bandwidth_limit: float  # bytes per second, 0 = none
    stable_for_s: float
    rescan_interval_s: float
    retry_initial_s: float
    retry_max_s: float
    retention: str
    retention_keep_newest: int
    retention_max_bytes: int
    require_root_owner: bool
    owner_uid: int | None  # who must own dumps and the directories on the way; None: any
    topic: str
    agent_version: str
    metrics_textfile: str
    spool: bool = False  # embedded pipeline: watch_dirs are spools (any file, per-host dirs)


class Agent:
    """One agent process's state. ``producer_factory`` may raise ``EndpointUnreachable``
    while Kafka is down; events then wait in the journal's outbox."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: ObjectStore,
        producer_factory: Callable[[], EventProducer],
        journal: Journal,
        identity: HostIdentity,
        metrics: AgentMetrics,
        facts: FactsReader,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = config
        self.store = store
        self.journal = journal
        self.identity = identity
        self.metrics = metrics
        self.facts = facts
        self.clock = clock
        self._producer_factory = producer_factory
        self._producer: EventProducer | None = None
        self._publish_not_before = 0.0
        self._publish_failures = 0
        self._throttle = LogThrottle(60.0)
        self.uploader = Uploader(
            store, part_size=config.part_size, concurrency=config.upload_concurrency,
            limiter=RateLimiter(config.bandwidth_limit), on_bytes=metrics.bytes_uploaded.inc,
        )
        self._inotify: Inotify | None = None
        self._recheck_at = float("inf")  # when a not-yet-stable dump should be looked at again
        self.lister = Lister()
        self._skips_logged: dict[tuple[str, str], int] = {}

    # -- detection ----------------------------------------------------------------------------

    def scan(self) -> int:
        """Find finished dumps and journal new ones; returns how many were new."""
        new = 0
        now = self.clock()
        self._recheck_at = float("inf")
        for root in self.cfg.watch_dirs:
            try:
                new += self._scan_root(root, now)
            except JournalUnwritable:
                raise  # every other root would meet it too: the loop waits (``run``)
            except Exception:
                # One unreadable or hostile directory must not stop the others, nor the loop.
                self.metrics.failures.labels(stage="scan").inc()
                log.exception("scan.error", root=name_text(root))
        self._report_skips()
        return new

    def _scan_root(self, root: str, now: float) -> int:
        new = 0
        if self.cfg.spool:
            candidates, refusals = scan_spool(root, lister=self.lister)
        else:
            candidates, refusals = scan(root, require_root_owner=self.cfg.owner_uid is not None,
                                        owner_uid=self.cfg.owner_uid or 0, lister=self.lister)
        for r in refusals:
            self._refuse(r.path, r.reason)
        for c in candidates:
            try:
                new += self._consider(root, c, now)
            except JournalUnwritable:
                raise
            except Exception:
                # A bug met on one entry (a name, a file nothing anticipated) must not hide
                # the other dumps: this entry is looked at again on the next scan.
                self.metrics.failures.labels(stage="scan").inc()
                log.exception("scan.entry_error", path=name_text(c.path))
        self._watch(root)
        return new

    def _report_skips(self) -> None:
        """One log line per directory and kind of skip when its count changes; the metric
        counts every skipped entry of every scan."""
        for s in self.lister.take_skipped():
            self.metrics.skipped.labels(kind=s.kind).inc(s.count)
            if self._skips_logged.get((s.path, s.kind)) != s.count:
                self._skips_logged[(s.path, s.kind)] = s.count
                emit = log.info if s.kind == "junk" else log.warning
                emit("scan.entries_skipped", dir=name_text(s.path), kind=s.kind, count=s.count)

    def _refuse(self, path: str, reason: str) -> None:
        if not self.journal.is_refused(path):
            self.journal.refuse(path, reason)
            self.metrics.refused.inc()
            log.warning("dump.refused", path=name_text(path), reason=name_text(reason))

    def _root_of(self, path: str) -> str:
        return root_of(self.cfg.watch_dirs, path)

    def _open(self, root: str, path: str) -> int:
        return open_below(root, path, owner_uid=self.cfg.owner_uid)

    def _consider(self, root: str, c: Candidate, now: float) -> bool:
        try:
            fd = self._open(root, c.path)
        except DumpRefused as exc:
            self._refuse(c.path, exc.reason)
            return False
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.metrics.failures.labels(stage="read").inc()
            log.warning("dump.unreadable", path=name_text(c.path), error=exc.strerror)
            return False
        try:
            st = os.fstat(fd)
            if now - st.st_mtime < self.cfg.stable_for_s:
                # Still changing, or just written: look again once it has been quiet enough.
                self._recheck_at = min(self._recheck_at, st.st_mtime + self.cfg.stable_for_s)
                return False
            if is_open_for_writing(fd, c.path):
                self._recheck_at = min(self._recheck_at, now + self.cfg.stable_for_s)
                return False
        finally:
            os.close(fd)
        _row, is_new = self.journal.add(c.path, st.st_dev, st.st_ino, st.st_size,
                                        st.st_mtime_ns, c.layout, c.dmesg_path,
                                        c.crash_time_hint, host=c.host)
        if is_new:
            self.metrics.detected.inc()
            log.info("dump.detected", path=name_text(c.path), layout=c.layout, size=st.st_size)
        return is_new

    def _watch(self, root: str) -> None:
        if self._inotify is None:
            return
        self._inotify.watch(root)
        try:
            with os.scandir(root) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        self._inotify.watch(e.path)
        except OSError:
            pass

    # -- shipping -----------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        delay = backoff_s(attempts, initial_s=self.cfg.retry_initial_s,
                          max_s=self.cfg.retry_max_s)
        return delay * random.uniform(0.5, 1.0)  # jitter: hosts recovering together spread

    def _retry_later(self, row: DumpRow, error: str) -> float:
        """Journal a failed attempt at ``row``; returns the seconds until its next one."""
        retry_in = self._backoff(row.attempts)
        self.journal.fail(row.id, error, self.clock() + retry_in)
        self.metrics.failures.labels(stage="upload").inc()
        return retry_in

    def ship_due(self, *, ignore_backoff: bool = False) -> None:
        """Upload every dump whose turn has come."""
        now = float("inf") if ignore_backoff else self.clock()
        for row in self.journal.due(now):
            structlog.contextvars.bind_contextvars(dump=name_text(row.path))
            try:
                self._ship(row)
            except JournalUnwritable:
                raise  # nothing can be journaled, not even the failure: the loop waits
            except CrashfleetError as exc:
                if is_retryable(exc):
                    retry_in = self._retry_later(row, str(exc))
                    # One line per condition while it lasts (an outage or a missing bucket
                    # fails every dump the same way), not one per dump per retry.
                    level = log.warning if self._throttle.allow(str(exc)) else log.debug
                    level("dump.retry", error=name_text(str(exc)), retry_in_s=round(retry_in, 2))
                else:
                    self.journal.fail(row.id, str(exc), float("inf"), permanent=True)
                    self.metrics.failures.labels(stage="upload").inc()
                    log.error("dump.failed", error=name_text(str(exc)), permanent=True)
            except OSError as exc:
                retry_in = self._retry_later(row, str(exc))
                log.warning("dump.retry", error=name_text(str(exc)),
                            retry_in_s=round(retry_in, 2))
            except Exception as exc:
                # A bug met on one dump (a field nothing anticipated) must not stop the
                # shipping of every other dump on this host, restart after restart: the dump
                # waits in the journal and is retried with backoff; the log has the traceback.
                retry_in = self._retry_later(row, f"unexpected {type(exc).__name__}: {exc}")
                log.exception("dump.error", retry_in_s=round(retry_in, 2))
            finally:
                structlog.contextvars.unbind_contextvars("dump")

    def _ship(self, row: DumpRow) -> None:
        try:
            fd = self._open(self._root_of(row.path), row.path)
        except FileNotFoundError:
            self.journal.supersede(row.id, "file disappeared before it was shipped")
            log.warning("dump.vanished")
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
                    row.dev, row.ino, row.size, row.mtime_ns):
                self.journal.supersede(row.id, "file changed after detection")
                log.info("dump.superseded")
                return
            self._ship_fd(row, fd)
        finally:
            os.close(fd)

    def _ship_fd(self, row: DumpRow, fd: int) -> None:
        """Ship one dump: upload it (with a flattened dump's index), then its log, then journal
        the announcement (``publish`` sends it)."""
        from agent.upload import hash_fd

        t0 = time.monotonic()
        log_only = self.cfg.content == "log-only"
        # Read through the checked descriptor: the name may point elsewhere by now.
        by_fd = f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else row.path
        facts = self.facts(by_fd, log_only and not row.dmesg_path)
        sha = row.sha256
        if sha is None:
            sha = hash_fd(fd, row.size)
            self.journal.set_hash(row.id, sha, self.cfg.dumps_prefix + sha)
        base = self.cfg.dumps_prefix + sha
        key = index_key = None
        if not log_only:
            key, index_key = self._upload_dump(row, fd, by_fd, base, sha, facts, t0)
        dmesg = self._dmesg_bytes(row, facts)
        dmesg_key = None
        if dmesg is not None:
            dmesg_key = base + ".dmesg"
            self.store.put(dmesg_key, dmesg, {"sha256": sha})
        self._announce(row, sha, facts, key, dmesg_key, index_key)

    def _upload_dump(self, row: DumpRow, fd: int, by_fd: str, base: str, sha: str,
                     facts: DumpFacts, t0: float) -> tuple[str, str | None]:
        """Upload the dump to ``base`` (resuming a journaled upload) and, for a flattened
        dump, its offset index: (dump key, index key or None)."""
        t_hashed = time.monotonic()
        meta = {"sha256": sha, "host": self.identity.hostname,
                "machine-id": self.identity.machine_id, "format": facts.format}
        # A flattened dump's offset index is built from the bytes as they stream past.
        builder = StreamIndex() if facts.format == "flattened" else None
        result = self.uploader.upload(
            fd, row.size, base, sha, meta, upload_id=row.upload_id,
            done_parts=row.parts, part_size=row.part_size,
            on_start=lambda uid, ps: self.journal.start_upload(row.id, uid, ps),
            on_part=lambda p: self.journal.add_part(row.id, p),
            on_data=builder.feed if builder else lambda b: None,
        )
        index_key = None
        if builder is not None:
            index_key = ship_index(self.store, by_fd, base, sha, builder,
                                   result.already_stored)
        log.info("dump.uploaded", key=base, sent_bytes=result.sent_bytes,
                 reused_parts=result.reused_parts, already_stored=result.already_stored,
                 seconds=round(time.monotonic() - t_hashed, 3),
                 header_and_hash_seconds=round(t_hashed - t0, 3))
        return base, index_key

    def _announce(self, row: DumpRow, sha: str, facts: DumpFacts, key: str | None,
                  dmesg_key: str | None, index_key: str | None) -> None:
        """Journal the crash-reported event of a shipped dump (sent by ``publish``)."""
        event = crash_event(row, sha, facts, DumpKeys(key, dmesg_key, index_key),
                            identity=self.identity, content=self.cfg.content,
                            agent_version=self.cfg.agent_version, now=self.clock())
        self.journal.mark_uploaded(row.id, event.event_id, self.cfg.topic,
                                   event.host.machine_id.encode() or None, event.to_bytes())

    def _dmesg_bytes(self, row: DumpRow, facts: DumpFacts) -> bytes | None:
        if row.dmesg_path:
            try:
                fd = self._open(self._root_of(row.dmesg_path), row.dmesg_path)
            except DumpRefused as exc:  # the log is left out; the dump still ships
                log.warning("dmesg.refused", path=name_text(row.dmesg_path), reason=exc.reason)
                fd = -1
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    return os.read(fd, MAX_DMESG_BYTES)
                finally:
                    os.close(fd)
        # Without the kernel's own dmesg file, log-only mode ships the log read from the dump.
        return facts.kernel_log if self.cfg.content == "log-only" else None

    # -- announcing ---------------------------------------------------------------------------

    def publish(self, *, ignore_backoff: bool = False) -> bool:
        """Send the outbox in order, one acknowledged event at a time; True when empty."""
        if not ignore_backoff and self.clock() < self._publish_not_before:
            return False
        while True:
            batch = self.journal.unsent(limit=100)
            if not batch:
                return True
            try:
                if self._producer is None:
                    self._producer = self._producer_factory()
                for item in batch:
                    self._producer.send(item.topic, item.payload, key=item.key,
                                        headers=[("event-type", b"crash-reported")])
                    # Bounded, so a stop is seen while Kafka does not answer; a timeout is
                    # retried from the journal's outbox like any other publish failure.
                    self._producer.flush(timeout_s=_FLUSH_S)
                    self.journal.mark_sent([item.seq])
                    self.metrics.shipped.inc()
                    self.metrics.last_success.set(self.clock())
                    log.info("event.published", event_id=item.event_id)
                self._publish_failures = 0
            except RetryableIngestError as exc:
                self.journal.note_send_failure([batch[0].seq])
                self.metrics.failures.labels(stage="publish").inc()
                retry_in = self._backoff(self._publish_failures)
                self._publish_failures += 1
                self._publish_not_before = self.clock() + retry_in
                level = log.warning if self._throttle.allow("publish: " + str(exc)) \
                    else log.debug
                level("event.retry", error=str(exc), retry_in_s=round(retry_in, 2))
                self._drop_producer()
                return False

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close()
            except Exception as exc:  # a broken connection may fail to close; it is dropped
                log.debug("producer.close_failed", error=str(exc))
            self._producer = None

    # -- retention ----------------------------------------------------------------------------

    def retain(self) -> None:
        """Delete shipped dumps as the retention policy says (only announced ones)."""
        if self.cfg.retention == "keep":
            return
        shipped = [r for r in self.journal.by_state("announced") if not r.removed]
        for r in select_for_removal(shipped, self.cfg.retention,
                                    keep_newest=self.cfg.retention_keep_newest,
                                    max_bytes=self.cfg.retention_max_bytes):
            remove_dump(r, self.cfg.watch_dirs)
            self.journal.mark_removed(r.id)
            log.info("dump.removed", path=name_text(r.path), policy=self.cfg.retention)

    # -- loops --------------------------------------------------------------------------------

    def update_metrics(self) -> None:
        counts = self.journal.counts()
        self.metrics.backlog.labels(kind="dumps").set(
            counts["pending"] + counts["uploading"] + counts["failed"])
        self.metrics.backlog.labels(kind="events").set(counts["outbox"])
        if self.cfg.metrics_textfile:
            try:
                self.metrics.write_textfile(self.cfg.metrics_textfile)
            except OSError as exc:
                log.warning("metrics.textfile_failed", error=str(exc))

    def run_once(self) -> bool:
        """Scan, ship everything finished, wait for acknowledgements; True when nothing is
        left waiting (no dump to upload, no unacknowledged event)."""
        self.scan()
        self.ship_due(ignore_backoff=True)
        self.publish(ignore_backoff=True)
        self.retain()
        self.update_metrics()
        counts = self.journal.counts()
        self._drop_producer()
        return counts["pending"] + counts["uploading"] + counts["failed"] + counts["outbox"] == 0

    def _pass(self, last_scan: float) -> float:
        """One turn of the loop; returns when the last scan happened."""
        now = self.clock()
        if now - last_scan >= self.cfg.rescan_interval_s or now >= self._recheck_at:
            self.scan()
            last_scan = self.clock()
        self.ship_due()
        self.publish()
        self.retain()
        self.update_metrics()
        return last_scan

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set: inotify wakes the loop early, rescans happen anyway."""
        try:
            self._inotify = Inotify()
        except OSError as exc:
            log.warning("inotify.unavailable", error=str(exc))
        last_scan = 0.0
        errors = 0
        try:
            while not stop.is_set():
                try:
                    last_scan = self._pass(last_scan)
                    errors = 0
                except JournalUnwritable as exc:
                    # A full disk under the state directory: one line while it lasts, then
                    # the same steps again (the dumps wait where they are).
                    self.metrics.failures.labels(stage="journal").inc()
                    level = log.warning if self._throttle.allow(str(exc)) else log.debug
                    level("journal.unwritable", error=name_text(str(exc)))
                    errors += 1
                    stop.wait(self._backoff(errors))
                    continue
                except Exception:
                    # Whatever a pass meets, the agent stays alive (a dead thread would switch
                    # collection off while the process looks healthy): log, wait, go on.
                    self.metrics.failures.labels(stage="scan").inc()
                    log.exception("agent.pass_failed")
                    errors += 1
                    stop.wait(self._backoff(errors))
                    continue
                wait_s = max(0.05, min(self.cfg.rescan_interval_s, 1.0,
                                       self._recheck_at - self.clock()))
                woke = self._inotify.wait(wait_s) if self._inotify else stop.wait(wait_s)
                if woke:
                    last_scan = 0.0  # something changed: rescan now
        finally:
            self._drop_producer()
            if self._inotify is not None:
                self._inotify.close()


