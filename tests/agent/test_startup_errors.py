"""Start-up and configuration errors are one clear line naming the setting and what to do:
an agent state directory that cannot hold the journal, and a bucket that does not exist
(an S3 endpoint answering NoSuchBucket), which is logged once while it lasts, not once per
dump per retry."""

from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from crashfleet.cli import main
from crashfleet.wiring.agent import build_agent
from foundation.settings import load_settings


def test_unusable_state_dir_is_one_line_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("CRASHFLEET_CONFIG", raising=False)
    monkeypatch.setenv("CRASHFLEET_AGENT_STATE_DIR", str(blocker / "state"))
    monkeypatch.setenv("CRASHFLEET_AGENT_WATCH_DIRS", str(tmp_path / "crash"))
    assert main(["agent", "--once"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "agent.state_dir" in err and "cannot open the agent's journal" in err


class _NoSuchBucket(http.server.BaseHTTPRequestHandler):
    """Answers every request as S3 does for a bucket that does not exist."""

    def _answer(self) -> None:
        body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchBucket</Code>"
                b"<Message>The specified bucket does not exist</Message></Error>")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_missing_bucket_waits_and_is_logged_once(
        tmp_path: Path, fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    """The S3 endpoint is a small HTTP server answering NoSuchBucket to everything (the
    suite's SeaweedFS creates buckets on first write, so it cannot show a missing one)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoSuchBucket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = load_settings(None, env={})
    s = dataclasses.replace(
        base,
        s3=dataclasses.replace(base.s3, endpoint_url=f"http://127.0.0.1:{server.server_port}",
                               bucket="missing-bucket", addressing_style="path",
                               max_attempts=1),
        agent=dataclasses.replace(base.agent, watch_dirs=(str(tmp_path / "crash"),),
                                  state_dir=str(tmp_path / "state"), stable_for_s=0.0,
                                  retry_initial_s=0.0, retry_max_s=0.0))
    for i, (_, dump) in enumerate(fixture_dumps[:3]):
        d = tmp_path / "crash" / f"2026112512{i:02d}"
        d.mkdir(parents=True)
        shutil.copy(dump, d / f"dump.2026112512{i:02d}")
    agent = build_agent(s, registry=CollectorRegistry())
    structlog.reset_defaults()  # no level filter left by an earlier CLI test: debug lines count
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                agent.scan()
                agent.ship_due(ignore_backoff=True)
    finally:
        server.shutdown()
    retries = [e for e in logs if e["event"] == "dump.retry"]
    assert len(retries) == 9  # three dumps, three passes ...
    warned = [e for e in retries if e["log_level"] == "warning"]
    assert len(warned) == 1  # ... one line
    assert "'missing-bucket' does not exist" in warned[0]["error"]
    assert "s3.bucket" in warned[0]["error"]
    assert not [e for e in logs if e["event"] in ("dump.error", "dump.failed")]
    counts = agent.journal.counts()
    assert counts["failed"] + counts["pending"] == 3  # waiting, none given up
