"""Suite-wide fixtures: the real services, started once per session on free loopback ports.

Tansu (Kafka protocol) and SeaweedFS (S3) are started by :class:`crashfleet.stack.Stack`, the
same code behind ``crashfleet stack up``. PostgreSQL comes from ``CRASHFLEET_TEST_POSTGRES_DSN``,
else a server on 127.0.0.1:5432, else a throwaway cluster from Debian's binaries. Every test
gets its own topic names, bucket and database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.stack import Stack, StackError, StackInfo

from .fixtures.identity import is_recorded_dump

_USED: dict[str, str] = {}


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """Kafka + S3 on free ports for the whole session."""
    root = tmp_path_factory.mktemp("stack")
    stack = Stack(root, services=("kafka", "s3"))
    info = stack.up(timeout=120)
    _USED["kafka (Tansu)"] = info.kafka_bootstrap
    _USED["s3 (SeaweedFS)"] = info.s3_endpoint
    try:
        yield info
    finally:
        stack.down()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server's maintenance database."""
    root = tmp_path_factory.mktemp("pg")
    stack = Stack(root, services=("postgres",),
                  postgres_dsn=os.environ.get("CRASHFLEET_TEST_POSTGRES_DSN"))
    try:
        info = stack.up(timeout=120)
    except StackError as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}")
    _USED["postgresql"] = f"{info.postgres_dsn} ({info.postgres_source})"
    try:
        yield info.postgres_dsn
    finally:
        stack.down()


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards. Yields a psycopg DSN."""
    import psycopg

    name = "cf_" + uuid.uuid4().hex[:16]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names (topics, groups, buckets)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def s3_bucket(services: StackInfo, unique: str) -> str:
    """A fresh bucket on the session's S3 server."""
    from ingest.s3 import S3ObjectStore

    name = f"t-{unique}"
    S3ObjectStore(name, endpoint_url=services.s3_endpoint, addressing_style="path").ensure_bucket()
    return name


@pytest.fixture(autouse=True, scope="session")
def _s3_credentials() -> None:
    # SeaweedFS started without an identity file accepts any signed request; boto3 still
    # needs some credentials to sign with. Production uses boto3's standard chain.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "crashfleet-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "crashfleet-test")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An object store: the local-directory one, then the real S3 server (same tests)."""
    from ingest import LocalObjectStore

    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    from ingest.s3 import S3ObjectStore

    services: StackInfo = request.getfixturevalue("services")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket, endpoint_url=services.s3_endpoint, addressing_style="path")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _USED:
        terminalreporter.section("real services used by this run")
        for name, where in _USED.items():
            terminalreporter.write_line(f"{name}: {where}")


REPO = Path(__file__).resolve().parent.parent

# The committed corpus; CRASHFLEET_FIXTURES_DIR points at a larger regenerated one instead.
FIXTURES = Path(os.environ.get("CRASHFLEET_FIXTURES_DIR")
                or REPO / "tests" / "fixtures" / "dumps")
CORPUS = Path(os.environ.get("CRASHFLEET_CACHE")
              or Path.home() / ".cache" / "crashfleet") / "fixtures"


@pytest.fixture(scope="session")
def fixture_dumps() -> list[tuple[dict[str, object], Path]]:
    """Every real dump with its manifest: those committed with their dump, plus those whose
    dump only this machine's ``make fixtures`` corpus holds (the file the manifest records,
    by SHA-256). A fresh machine has just the committed ones."""
    import json

    out = []
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        dump = manifest.parent / str(m["dump"])
        if not dump.is_file():
            dump = CORPUS / manifest.parent.name / str(m["dump"])
            if not is_recorded_dump(dump, m):  # a regenerated corpus holds other boots
                continue
        out.append((m, dump))
    assert len(out) >= 3, "the committed fixture dumps are missing"
    return out
