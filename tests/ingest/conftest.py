"""Event-log backends for the ingest contract tests: each test runs against the real broker
and the embedded equivalent (the object-store backends are in tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.stack import StackInfo
from ingest import EmbeddedAdmin, EmbeddedConsumer, EmbeddedLog, EmbeddedProducer


class LogBackend:
    """Makes producers, consumers and an admin for one backend."""

    def __init__(self, name: str, make_producer: Callable[[], Any],
                 make_consumer: Callable[..., Any], admin: Any):
        self.name = name
        self.producer = make_producer
        self.consumer = make_consumer
        self.admin = admin


@pytest.fixture(params=["embedded", "kafka"])
def log_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogBackend]:
    closers: list[Any] = []

    def track(obj: Any) -> Any:
        closers.append(obj)
        return obj

    if request.param == "embedded":
        log = EmbeddedLog(tmp_path / "events.sqlite")

        def consumer(group: str, topics: list[str], **kw: Any) -> Any:
            kw.setdefault("session_timeout_s", 2.0)
            return track(EmbeddedConsumer(log, group, topics, **kw))

        backend = LogBackend("embedded", lambda: track(EmbeddedProducer(log)), consumer,
                             EmbeddedAdmin(log))
    else:
        from ingest.kafka import KafkaAdmin, KafkaConsumer, KafkaProducer

        services: StackInfo = request.getfixturevalue("services")
        bs = services.kafka_bootstrap

        def kconsumer(group: str, topics: list[str], **kw: Any) -> Any:
            kw.setdefault("session_timeout_s", 6.0)
            return track(KafkaConsumer(bs, group, topics, **kw))

        backend = LogBackend("kafka", lambda: track(KafkaProducer(bs)), kconsumer,
                             track(KafkaAdmin(bs)))
    try:
        yield backend
    finally:
        for obj in reversed(closers):
            # Closing after a failed test must not hide the failure.
            with contextlib.suppress(Exception):
                obj.close()
