"""``crashfleet web --data DIR``: the command serves the pages and the API of an embedded run's
store on the port asked for, until it is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from signature import Frame, SignatureInput, compute_signature
from store import CrashRecord, CrashStore


def test_web_command_serves_a_data_directory(tmp_path: Path) -> None:
    store = CrashStore(f"sqlite:///{tmp_path / 'crashfleet.sqlite'}")
    store.migrate()
    sig = compute_signature(SignatureInput("sysrq", Frame("sysrq_handle_crash"), (), "G"))
    at = datetime.now(UTC)
    store.record(CrashRecord("crash-1", "h1", "m1", "6.1.0-56-cloud-amd64", None, at, at, None,
                             None, sig, (), False))
    store.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", "web", "--data",
                             str(tmp_path), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"web: http://127.0.0.1:{port}/"
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/clusters",
                                            timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and body["clusters"][0]["id"] == sig.id
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert "sysrq" in r.read().decode()
            assert "script-src 'self'" in r.headers["content-security-policy"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal for the exit status.
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err
