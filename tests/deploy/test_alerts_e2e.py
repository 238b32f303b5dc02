"""Alerts end to end: Debian's Prometheus scrapes an analyzer's /metrics and evaluates
deploy/prometheus/alerts.yml; after a real use-after-module-unload dump is analyzed and
stored, CrashfleetModuleUnloadCrash (and CrashfleetNewTaintFlag for its new taint flags) fires
and reaches a webhook receiver in this test through Debian's Alertmanager. Both binaries are
extracted from their packages (scripts/get-*.sh) and run on loopback ports."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from analyzer.metrics import AnalyzerMetrics, StoreCollector
from analyzer.service import AnalyzerLoop, LoopConfig
from analyzer.worker import EventProcessor
from crashfleet.stack import free_port
from ingest import EmbeddedConsumer, EmbeddedLog, EmbeddedProducer, LocalObjectStore
from ingest.events import CrashReported, DumpRef, HostIdentity, crash_event_id
from store import CrashStore

REPO = Path(__file__).resolve().parents[2]


def _tool(script: str, name: str) -> str:
    r = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"{script}: {r.stderr}"
    path = Path(r.stdout.strip()).parent / name
    assert path.is_file(), f"{name} not beside {r.stdout.strip()}"
    return str(path)


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[int, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], received
    server.shutdown()


def _analyzer_with_metrics(tmp: Path, dump: Path) -> int:
    """A real use-after-unload dump analyzed into a store whose metrics are served; the port."""
    objects = LocalObjectStore(tmp / "objects")
    log = EmbeddedLog(tmp / "events.sqlite")
    store = CrashStore(f"sqlite:///{tmp / 'store.sqlite'}")
    store.migrate()
    registry = CollectorRegistry()
    metrics = AnalyzerMetrics(registry)
    registry.register(StoreCollector(store))
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    data = dump.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    objects.put(f"dumps/{sha}", data)
    producer = EmbeddedProducer(log)
    producer.send("reported", CrashReported(
        event_id=crash_event_id(sha), schema_version=1, host=HostIdentity("h", "m" * 32, "b"),
        dump=DumpRef(sha256=sha, size=len(data), format="unknown", content="full",
                     key=f"dumps/{sha}"),
        layout="spool", source_path="/spool/x", agent_version="t",
        reported_at="2026-11-25T12:00:00Z").to_bytes())
    producer.flush()
    loop = AnalyzerLoop(LoopConfig("analyzed", "dead", poll_timeout_s=0.2),
                        consumer=EmbeddedConsumer(log, "g", ["reported"]),
                        producer=EmbeddedProducer(log),
                        processor=EventProcessor(objects=objects, store=store,
                                                 report_suffix=".report.json",
                                                 block_cache_bytes=1 << 22),
                        store=store, metrics=metrics)
    assert loop.run(threading.Event(), idle_exit_s=0.5) == 1
    return port


def test_module_unload_alert_reaches_the_webhook(
        tmp_path: Path, webhook: tuple[int, list[dict[str, object]]],
        fixture_dumps: list[tuple[dict[str, object], Path]]) -> None:
    prometheus = _tool("get-promtool.sh", "prometheus")
    alertmanager = _tool("get-alertmanager.sh", "prometheus-alertmanager")
    uau = next(d for m, d in fixture_dumps if m["scenario"] == "uau")
    metrics_port = _analyzer_with_metrics(tmp_path, uau)
    hook_port, received = webhook
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(json.dumps({
        "route": {"receiver": "test", "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [
            {"url": f"http://127.0.0.1:{hook_port}/hook", "send_resolved": False}]}],
    }))
    (tmp_path / "prom.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "alerts.yml")],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "crashfleet-analyzer", "static_configs": [
            {"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    procs = [
        subprocess.Popen([*_with_templates(alertmanager), f"--config.file={tmp_path / 'am.yml'}",
                          f"--storage.path={tmp_path / 'am-data'}",
                          f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address="],
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("w")),
        subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prom.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"],
                         stdout=subprocess.DEVNULL, stderr=(tmp_path / "prom.log").open("w")),
    ]
    try:
        deadline = time.monotonic() + 120  # a bound on a hung test, not a speed assertion
        while time.monotonic() < deadline and not (
                _fired(received) and _fired(received, "CrashfleetNewTaintFlag")):
            assert all(p.poll() is None for p in procs), (tmp_path / "prom.log").read_text()
            time.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    alert = _fired(received)
    assert alert, "no CrashfleetModuleUnloadCrash at the webhook:\n" + \
        (tmp_path / "prom.log").read_text()[-2000:]
    assert alert["labels"]["module"] == "vendordeferio"  # type: ignore[index]
    assert alert["labels"]["severity"] == "critical"  # type: ignore[index]
    # The dump's kernel carried taint flags never seen before: their alert came the same way.
    taint = _fired(received, "CrashfleetNewTaintFlag")
    assert taint and taint["labels"]["flag"] in ("E", "O")  # type: ignore[index]


def _with_templates(alertmanager: str) -> list[str]:
    """The command running ``alertmanager``: Debian's build reads its default notification
    template from /usr/share/prometheus/alertmanager, which an extracted package does not
    provide; the extracted tree's usr/share is then bind-mounted over /usr/share for that
    process alone (a private mount namespace; nothing on the host changes)."""
    if Path("/usr/share/prometheus/alertmanager/default.tmpl").is_file():
        return [alertmanager]
    share = Path(alertmanager).parents[1] / "share"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Alertmanager's templates are not installed and no mount namespace "
                    f"can provide them: {probe.stderr.decode(errors='replace').strip()}")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /usr/share && exec "$@"', str(share), alertmanager]


def _fired(received: list[dict[str, object]],
           name: str = "CrashfleetModuleUnloadCrash") -> dict[str, object] | None:
    for msg in received:
        for alert in msg.get("alerts", []):  # type: ignore[attr-defined]
            if alert["labels"].get("alertname") == name:
                return alert  # type: ignore[no-any-return]
    return None
