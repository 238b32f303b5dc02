"""``crashfleet stack up|status|down`` against the real binaries: it starts Tansu and
SeaweedFS, both answer, and ``down`` leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crashfleet.stack import kafka_ready

CLI = [sys.executable, "-m", "crashfleet.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, env=env)


def _pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


@pytest.mark.services
def test_stack_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    d = str(tmp_path / "stack")
    up = run("stack", "up", "--dir", d, "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    try:
        assert kafka_ready(info["kafka_bootstrap"])
        status = run("stack", "status", "--dir", d, "--json")
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert st["kafka"]["answers"] and st["s3"]["answers"] and st["postgres"]["answers"]
        groups = [p["pid"] for p in info["processes"]]
        assert {p["name"] for p in info["processes"]} >= {"kafka", "s3"}
        assert all(_pids_in_group(g) for g in groups)
        # The configured bucket exists: listing it fails on a missing bucket.
        from foundation.settings import load_settings
        from ingest.s3 import S3ObjectStore

        bucket = load_settings(None, env={}).s3.bucket
        assert list(S3ObjectStore(bucket, endpoint_url=info["s3_endpoint"],
                                  addressing_style="path").list_objects("")) == []

        again = run("stack", "up", "--dir", d)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = run("stack", "down", "--dir", d)
    assert down.returncode == 0, down.stderr
    assert "kafka" in down.stdout and "s3" in down.stdout
    for g in groups:
        assert _pids_in_group(g) == [], f"process group {g} still has processes"
    assert not kafka_ready(info["kafka_bootstrap"], timeout=1.0)
    gone = run("stack", "status", "--dir", d)
    assert gone.returncode == 1 and "no stack running" in gone.stdout


@pytest.mark.services
def test_throwaway_postgres_when_no_server_is_used(tmp_path: Path) -> None:
    """Without a usable server the stack starts (and stops) its own PostgreSQL cluster."""
    from crashfleet.stack import Stack, _postgres_bindir, postgres_ready

    if _postgres_bindir() is None:
        pytest.skip("Debian's PostgreSQL binaries are not installed (scripts/setup-system.sh)")
    stack = Stack(tmp_path / "pg", services=("postgres",), use_local_postgres=False)
    info = stack.up(timeout=120)
    try:
        assert info.postgres_source == "throwaway"
        import psycopg

        with psycopg.connect(info.postgres_dsn) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        port = int(info.postgres_dsn.rsplit(":", 1)[1].split("/")[0])
    finally:
        stack.down()
    assert not postgres_ready("127.0.0.1", port, timeout=1.0)
