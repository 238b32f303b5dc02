"""Kafka adapters (kafka-python): a producer with ``acks=all``, a consumer-group member with
manual commits, and topic administration.

An unreachable bootstrap server raises :class:`~ingest.errors.EndpointUnreachable` naming it
within ``request_timeout_s``; a broker that stops answering later makes ``flush`` raise a
:class:`~ingest.errors.RetryableIngestError` within its timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
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
            max_block_ms=int(request_timeout_s * 1000),
            # Keep per-partition order across retries.
            max_in_flight_requests_per_connection=1,
            retries=3,
            delivery_timeout_ms=max(int(request_timeout_s * 1000) * 3, 3000),
        )
        self._producer = _connect("producer", kafka.KafkaProducer, bootstrap_servers,
                                  request_timeout_s, config)
        self._pending: list[Any] = []

    def send(self, topic: str, value: bytes, *, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        try:
            fut = self._producer.send(topic, value=value, key=key, headers=list(headers))
        except kafka.errors.KafkaTimeoutError as exc:
            raise RetryableIngestError(f"Kafka send to {topic} timed out: {exc}",
                                       endpoint=str(self._servers)) from exc
        self._pending.append(fut)

    def flush(self, timeout_s: float | None = None) -> None:
        timeout = self._timeout * 3 if timeout_s is None else timeout_s
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout)
            for fut in pending:
                fut.get(timeout=timeout)
        except kafka.errors.KafkaError as exc:
            raise RetryableIngestError(f"Kafka did not acknowledge records: {exc}",
                                       endpoint=str(self._servers)) from exc

    def close(self) -> None:
        self._producer.close(timeout=self._timeout)


class KafkaConsumer:
    """A member of consumer group ``group_id`` subscribed to ``topics``; manual commits."""

    def __init__(self, bootstrap_servers: Sequence[str] | str, group_id: str,
                 topics: Sequence[str], *, request_timeout_s: float = 10.0,
                 session_timeout_s: float = 10.0, auto_offset_reset: str = "earliest",
                 **extra: Any):
        config = _client_config(bootstrap_servers, request_timeout_s, extra)
        session_ms = int(session_timeout_s * 1000)
        config.update(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 3, 100),
            request_timeout_ms=max(config["request_timeout_ms"], session_ms + 5000),
        )
        self._consumer = _connect("consumer", kafka.KafkaConsumer, bootstrap_servers,
                                  request_timeout_s, config)
        self._consumer.subscribe(list(topics))

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
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
        try:
            if offsets is None:
                self._consumer.commit()
            else:
                self._consumer.commit({
                    kafka.TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
                    for tp, off in offsets.items()
                })
        except kafka.errors.KafkaError as exc:
            raise RetryableIngestError(f"Kafka commit failed: {exc}") from exc

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp`` (None when nothing was committed)."""
        value = self._consumer.committed(kafka.TopicPartition(tp.topic, tp.partition))
        return None if value is None else int(value)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def lag(self) -> int | None:
        # The high watermark as last reported by fetches (Tansu under-reports it after
        # batched produces, so this is a lower bound there).
        total, known = 0, False
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                continue
            known = True
            total += max(0, hw - self._consumer.position(tp))
        return total if known else None

    def close(self) -> None:
        self._consumer.close(autocommit=False)
