"""An endpoint that does not answer gives a clear error naming it, within the timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ingest import EndpointUnreachable


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port with nothing listening (held bound, never listened on)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port that accepts connections but never answers (a hung server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_s3_unreachable(dead_port: int) -> None:
    from ingest.s3 import S3ObjectStore

    endpoint = f"http://127.0.0.1:{dead_port}"
    store = S3ObjectStore("crashfleet", endpoint_url=endpoint, connect_timeout_s=1.0,
                          read_timeout_s=1.0, max_attempts=2)
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        store.head("dumps/x")
    assert time.monotonic() - t0 < 20
    assert endpoint in str(info.value) and "S3" in str(info.value)


def test_s3_hung_server(blackhole_port: int) -> None:
    from ingest.s3 import S3ObjectStore

    endpoint = f"http://127.0.0.1:{blackhole_port}"
    store = S3ObjectStore("crashfleet", endpoint_url=endpoint, connect_timeout_s=1.0,
                          read_timeout_s=1.0, max_attempts=1)
    with pytest.raises(EndpointUnreachable) as info:
        store.get_range("dumps/x", 0, 10)
    assert endpoint in str(info.value)


@pytest.mark.parametrize("kind", ["producer", "consumer", "admin"])
def test_kafka_unreachable(dead_port: int, kind: str) -> None:
    from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer

    bootstrap = f"127.0.0.1:{dead_port}"
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        if kind == "producer":
            KafkaProducer(bootstrap, request_timeout_s=2.0)
        elif kind == "consumer":
            KafkaConsumer(bootstrap, "g", ["t"], request_timeout_s=2.0)
        else:
            KafkaAdmin(bootstrap, request_timeout_s=2.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"took {elapsed:.1f}s for a 2s timeout"
    assert bootstrap in str(info.value) and "Kafka" in str(info.value)


def test_kafka_hung_broker(blackhole_port: int) -> None:
    from ingest.kafka import KafkaProducer

    bootstrap = f"127.0.0.1:{blackhole_port}"
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        KafkaProducer(bootstrap, request_timeout_s=2.0)
    assert time.monotonic() - t0 < 10
    assert bootstrap in str(info.value)
