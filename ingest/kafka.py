"""Kafka adapters (kafka-python): a producer with ``acks=all``, a consumer-group member with
manual commits, and topic administration.

An unreachable bootstrap server raises :class:`~ingest.errors.EndpointUnreachable` naming it
within ``request_timeout_s``; a broker that stops answering later makes ``flush`` raise a
:class:`~ingest.errors.RetryableIngestError` within its timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kafka
import kafka.errors
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from foundation.secrets import read_secret_file
from ingest.errors import EndpointUnreachable, RetryableIngestError
from ingest.eventlog import Record, TopicPartition

__all__ = ["KafkaAdmin", "KafkaConsumer", "KafkaProducer", "kafka_client_options"]


def kafka_client_options(settings: Any) -> dict[str, Any]:
    """Common client options from a ``KafkaSettings`` section."""
    opts: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "request_timeout_s": settings.request_timeout_s,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = settings.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key):
                opts[key] = getattr(settings, key)
    if settings.sasl_mechanism:
        password = settings.sasl_password
        if settings.sasl_password_file:
            password = read_secret_file(settings.sasl_password_file,
                                        key="kafka.sasl_password_file")
        opts.update(sasl_mechanism=settings.sasl_mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=password)
    return opts


def _client_config(bootstrap_servers: Sequence[str] | str, request_timeout_s: float,
                   extra: Mapping[str, Any]) -> dict[str, Any]:
    servers = [bootstrap_servers] if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
    timeout_ms = int(request_timeout_s * 1000)
    return {
        "bootstrap_servers": servers,
        "bootstrap_timeout_ms": timeout_ms,
        "request_timeout_ms": max(timeout_ms, 1000),
        "reconnect_backoff_max_ms": 2000,
        **extra,
    }


def _connect(kind: str, factory: Any, servers: Sequence[str] | str, timeout_s: float,
             config: dict[str, Any]) -> Any:
    try:
        return factory(**config)
    except (kafka.errors.KafkaTimeoutError, kafka.errors.KafkaConnectionError) as exc:
        where = servers if isinstance(servers, str) else ",".join(servers)
        raise EndpointUnreachable(f"Kafka {kind}", where, timeout_s, str(exc)) from exc


class KafkaAdmin:
    """Topic administration."""

    def __init__(self, bootstrap_servers: Sequence[str] | str, *, request_timeout_s: float = 10.0,
                 **extra: Any):
        self._servers = bootstrap_servers
        self._admin = _connect("admin", kafka.KafkaAdminClient, bootstrap_servers,
                               request_timeout_s,
                               _client_config(bootstrap_servers, request_timeout_s, extra))

    def ensure_topics(self, partitions: Mapping[str, int]) -> None:
        existing = set(self._admin.list_topics())
        new = [NewTopic(name, n, 1) for name, n in partitions.items() if name not in existing]
        if not new:
            return
        # Created concurrently by another process: what we wanted.
        with contextlib.suppress(kafka.errors.TopicAlreadyExistsError):
            self._admin.create_topics(new)

    def close(self) -> None:
        self._admin.close()


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class KafkaProducer:
    """Producer with ``acks=all``; records with one key keep their order (one in flight)."""

    def __init__(self, bootstrap_servers: Sequence[str] | str, *, request_timeout_s: float = 10.0,
                 linger_ms: int = 5, **extra: Any):
        self._timeout = request_timeout_s
        self._servers = bootstrap_servers
        config = _client_config(bootstrap_servers, request_timeout_s, extra)
        config.update(
            acks="all",
            linger_ms=linger_ms,
            # send() blocks at most this long for metadata or buffer space, then raises a
            # retryable error: a caller waiting out an outage stays responsive to a stop.
            max_block_ms=int(min(request_timeout_s, 3.0) * 1000),
            # Keep per-partition order across retries.
            max_in_flight_requests_per_connection=1,
            retries=3,
            delivery_timeout_ms=max(int(request_timeout_s * 1000) * 3, 3000),
        )
        self._producer = _connect("producer", kafka.KafkaProducer, bootstrap_servers,
                                  request_timeout_s, config)
        # Each record sent and not yet acknowledged, with its future (None: to send again).
        self._pending: list[tuple[_Outgoing, Any]] = []

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        rec = _Outgoing(topic, value, key, tuple(headers))
        self._pending.append((rec, self._send(rec)))

    def _send(self, rec: _Outgoing) -> Any:
        try:
            return self._producer.send(rec.topic, value=rec.value, key=rec.key,
                                       headers=list(rec.headers))
        except kafka.errors.KafkaTimeoutError as exc:
            raise RetryableIngestError(f"Kafka send to {rec.topic} timed out: {exc}",
                                       endpoint=str(self._servers)) from exc

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every record sent since the last successful flush. A record the brokers
        did not acknowledge (timed out, expired, refused) stays pending and is sent again by
        the next ``flush``, so a flush that raised can simply be called again."""
        timeout = self._timeout * 3 if timeout_s is None else timeout_s
        for i, (rec, fut) in enumerate(self._pending):
            if fut is None or (fut.is_done and fut.failed()):
                self._pending[i] = (rec, None)
                self._pending[i] = (rec, self._send(rec))
        try:
            self._producer.flush(timeout=timeout)
        except kafka.errors.KafkaError as exc:
            raise RetryableIngestError(f"Kafka did not acknowledge records: {exc}",
                                       endpoint=str(self._servers)) from exc
        failed = [fut.exception for _, fut in self._pending if not fut.succeeded()]
        self._pending = [(rec, fut) for rec, fut in self._pending if not fut.succeeded()]
        if self._pending:
            raise RetryableIngestError(
                f"Kafka did not acknowledge {len(self._pending)} records: "
                f"{next((e for e in failed if e is not None), 'timed out')}",
                endpoint=str(self._servers))

    def close(self, timeout_s: float | None = None) -> None:
        """Close, waiting at most ``timeout_s`` (default 2 s) for records in flight. Callers
        treat only a successful ``flush`` as delivery, so what is dropped here is sent again
        after a restart: closing never holds up a stop."""
        timeout = min(self._timeout, 2.0) if timeout_s is None else timeout_s
        try:
            self._producer.close(timeout=timeout)
        except kafka.errors.KafkaError:
            # kafka-python's close() raises from its own flush when records are still
            # unacknowledged, before it stops its sender thread: stop that thread here, and
            # mark the producer closed so its finalizer does not try (and raise) again.
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            self._producer._closed = True


# What a consumer's owner hands over when partitions are revoked (``lost``: the member was
# evicted, nothing can be committed): the offsets to commit for them before they go.
RevokeHook = Callable[[set[TopicPartition], bool], Mapping[TopicPartition, int]]
# Told how that commit went: the offsets, and the error (None: committed).
RevokeReport = Callable[[Mapping[TopicPartition, int], Exception | None], None]


class _RevokeListener(kafka.AsyncConsumerRebalanceListener):
    """Runs on the consumer's I/O thread, before the partitions are given up (and when the
    consumer closes); commits what the owner's hook hands over, awaiting the commit so the
    I/O loop (heartbeats) keeps running meanwhile."""

    def __init__(self, owner: KafkaConsumer):
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner._revoked(revoked, lost=False)

    async def on_partitions_lost(self, lost: Any) -> None:
        await self._owner._revoked(lost, lost=True)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class KafkaConsumer:
    """A member of consumer group ``group_id`` subscribed to ``topics``; manual commits."""

    def __init__(self, bootstrap_servers: Sequence[str] | str, group_id: str,
                 topics: Sequence[str], *, request_timeout_s: float = 10.0,
                 session_timeout_s: float = 10.0, auto_offset_reset: str = "earliest",
                 max_poll_interval_s: float = 120.0,
                 **extra: Any):
        config = _client_config(bootstrap_servers, request_timeout_s, extra)
        session_ms = int(session_timeout_s * 1000)
        config.update(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 3, 100),
            # Also the rebalance timeout: how long a join waits for members that do not
            # rejoin (one killed while joining). The analyzer polls at least every second,
            # even while it waits out an outage, so two minutes is ample (default: 5).
            max_poll_interval_ms=int(max_poll_interval_s * 1000),
            request_timeout_ms=max(config["request_timeout_ms"], session_ms + 5000),
        )
        self._consumer = _connect("consumer", kafka.KafkaConsumer, bootstrap_servers,
                                  request_timeout_s, config)
        self._revoke: tuple[RevokeHook, RevokeReport] | None = None
        self._consumer.subscribe(list(topics), listener=_RevokeListener(self))
        self._timeout_ms = max(int(request_timeout_s * 1000), 1000)

    def on_revoke(self, hook: RevokeHook, report: RevokeReport) -> None:
        """Before partitions are given up in a rebalance, commit the offsets ``hook`` hands
        over for them (it is called on the consumer's I/O thread, while ``poll`` runs the
        rebalance); ``report`` says how the commit went."""
        self._revoke = (hook, report)

    async def _revoked(self, partitions: Any, *, lost: bool) -> None:
        if self._revoke is None:
            return
        hook, report = self._revoke
        offsets = hook({TopicPartition(tp.topic, tp.partition) for tp in partitions}, lost)
        if lost or not offsets:
            return
        try:
            # The coordinator's own commit, awaited on its loop: a blocking commit() from the
            # I/O thread is refused by kafka-python (it would wait on itself).
            await self._consumer._coordinator._commit_offsets_sync_async({
                kafka.TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
                for tp, off in offsets.items()}, self._timeout_ms)
        except Exception as exc:  # the group moved on: the new owner redoes them
            report(offsets, exc)
            return
        report(offsets, None)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        assigned = self._consumer.assignment()
        tps = [kafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self._consumer.pause(*(tp for tp in tps if tp in assigned))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        assigned = self._consumer.assignment()
        tps = [kafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self._consumer.resume(*(tp for tp in tps if tp in assigned))

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000),
                                          max_records=max_records)
        except kafka.errors.KafkaError as exc:
            if not getattr(exc, "retriable", False) and not isinstance(
                    exc, (kafka.errors.KafkaConnectionError, kafka.errors.KafkaTimeoutError)):
                raise
            raise RetryableIngestError(f"Kafka poll failed: {exc}") from exc
        out: list[Record] = []
        for tp, records in batches.items():
            for r in records:
                out.append(Record(
                    topic=tp.topic, partition=tp.partition, offset=r.offset, key=r.key,
                    value=r.value, headers=tuple((k, v) for k, v in (r.headers or [])),
                    timestamp_ms=int(r.timestamp),
                ))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        # Bounded: with the coordinator down, the commit fails within the request timeout
        # instead of blocking (kafka-python retries forever without one).
        try:
            if offsets is None:
                self._consumer.commit(timeout_ms=self._timeout_ms)
            else:
                self._consumer.commit({
                    kafka.TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
                    for tp, off in offsets.items()
                }, timeout_ms=self._timeout_ms)
        except kafka.errors.KafkaError as exc:
            raise RetryableIngestError(f"Kafka commit failed: {exc}") from exc

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` (None when nothing was committed)."""
        value = self._consumer.committed(kafka.TopicPartition(tp.topic, tp.partition))
        return None if value is None else int(value)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def group_state(self) -> str:
        """The member's state as kafka-python has it (read-only, for health):
        ``stable``, ``rebalancing`` (a JoinGroup/SyncGroup in flight), ``unjoined``, or
        ``no-coordinator`` while no group coordinator is known."""
        coordinator = self._consumer._coordinator
        if coordinator.coordinator_id is None:
            return "no-coordinator"
        return str(coordinator.state).strip("<>")

    def lag(self) -> int | None:
        # The high watermark as last reported by fetches (Tansu under-reports it after
        # batched produces, so this is a lower bound there).
        total, known = 0, False
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                continue
            pos = self._consumer.position(tp, timeout_ms=0)  # never block on a lag gauge
            if pos is None:
                continue
            known = True
            total += max(0, hw - pos)
        return total if known else None

    def close(self, timeout_s: float | None = None) -> None:
        """Leave the group; at most ``timeout_s`` (default the request timeout) with the
        coordinator unreachable."""
        timeout_ms = self._timeout_ms if timeout_s is None else int(timeout_s * 1000)
        self._consumer.close(autocommit=False, timeout_ms=timeout_ms)
