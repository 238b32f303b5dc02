"""Alerts proven end to end: the embedded pipeline exports /metrics, Debian's Prometheus scrapes
it and evaluates deploy/prometheus/alerts.yml, Debian's Alertmanager routes what fires to a
webhook receiver in this test. A use-after-module-unload dump arrives; the module-unload alert
and the new-taint-flag alerts reach the receiver with their labels."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
UAU_DUMP = REPO / "tests" / "fixtures" / "dumps" / "6.1-uau-1--mkd-erase" / "vmcore.flat"

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _tool(name: str) -> str:
    r = subprocess.run(["bash", str(REPO / "scripts" / "get-prometheus-tool.sh"), name],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{name} unavailable: {r.stderr}"
    return r.stdout.strip()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver:
    """An Alertmanager webhook receiver: keeps every alert it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.alerts.extend(json.loads(body).get("alerts", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(a["labels"]["alertname"],
                     a["labels"].get("module") or a["labels"].get("flag") or "")
                    for a in self.alerts if a.get("status") == "firing"}


def _start(argv: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, **kw)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()


def test_module_unload_and_taint_alerts_reach_the_webhook(tmp_path: Path,
                                                          receiver: _Receiver) -> None:
    prometheus = _tool("prometheus")
    _tool("alertmanager")  # fetched now, so the start below is quick
    metrics_port, am_port, prom_port = _port(), _port(), _port()
    spool, data = tmp_path / "spool", tmp_path / "data"
    (spool / "host-a").mkdir(parents=True)
    (tmp_path / "am.yml").write_text(
        "route: {receiver: test, group_wait: 1s, group_interval: 1s, repeat_interval: 1h,"
        " group_by: [alertname, module, flag]}\n"
        f"receivers: [{{name: test, webhook_configs: [{{url: "
        f"'http://127.0.0.1:{receiver.port}/', send_resolved: false}}]}}]\n")
    shutil.copy(REPO / "deploy" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: "
        f"['127.0.0.1:{am_port}']}}]}}]}}\n"
        f"scrape_configs: [{{job_name: crashfleet-analyzer, static_configs: [{{targets: "
        f"['127.0.0.1:{metrics_port}']}}]}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env["CRASHFLEET_STORE_URL"] = f"sqlite:///{data / 'crashfleet.sqlite'}"
    procs = [
        _start(["bash", str(REPO / "scripts" / "alertmanager.sh"),
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address="], tmp_path / "alertmanager.log"),
        _start([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log"),
        _start([sys.executable, "-m", "crashfleet.cli", "--log-format", "json", "run",
                "--spool", str(spool), "--data", str(data), "--metrics-port", str(metrics_port)],
               tmp_path / "run.log", env=env),
    ]
    try:
        # Let Prometheus scrape the empty pipeline first: the alerts must fire on the change.
        time.sleep(4)
        assert not receiver.names()
        shutil.copy(UAU_DUMP, spool / "host-a" / "vmcore.flat")
        want = {("CrashfleetModuleUnloadCrash", "vendordeferio"),
                ("CrashfleetNewTaintFlag", "O"), ("CrashfleetNewTaintFlag", "E")}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not want <= receiver.names():
            time.sleep(0.5)
            assert all(p.poll() is None for p in procs), [
                (f.name, f.read_text()[-2000:]) for f in tmp_path.glob("*.log")]
        assert want <= receiver.names(), (receiver.alerts,
                                          (tmp_path / "run.log").read_text()[-3000:])
        unload = next(a for a in receiver.alerts
                      if a["labels"]["alertname"] == "CrashfleetModuleUnloadCrash")
        assert unload["labels"]["severity"] == "critical"
        assert "vendordeferio" in unload["annotations"]["summary"]
    finally:
        _stop(procs)
