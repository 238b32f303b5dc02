"""json log mode writes only JSON lines, library records included (a real kafka-python client
failing to reach a broker logs through stdlib logging)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

_CHILD = r"""
import sys
import structlog
from foundation.logs import configure_logging
configure_logging("info", "json")
log = structlog.get_logger("crashfleet.test")
log.info("test.start", note="line with \"quotes\" and \x1b[31m escapes")
from kafka import KafkaProducer
from kafka.errors import KafkaError
try:
    KafkaProducer(bootstrap_servers=sys.argv[1], bootstrap_timeout_ms=1500,
                  reconnect_backoff_ms=50, reconnect_backoff_max_ms=100)
except KafkaError:
    log.warning("test.no_broker")
import logging
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("urllib3.connectionpool").exception("library failure")
log.info("test.end")
"""


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_json_mode_emits_only_json_lines_with_library_records() -> None:
    res = subprocess.run([sys.executable, "-c", _CHILD, f"127.0.0.1:{_dead_port()}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line parses, or this raises
    events = [d.get("event") for d in docs]
    assert events[0] == "test.start" and events[-1] == "test.end"
    assert "test.no_broker" in events
    kafka = [d for d in docs if str(d.get("logger", "")).startswith("kafka")]
    assert kafka, f"no kafka-python record among {events}"
    assert all(d["level"] in {"warning", "error", "critical"} for d in kafka)
    lib = next(d for d in docs if d.get("event") == "library failure")
    assert lib["logger"] == "urllib3.connectionpool" and "ZeroDivisionError" in lib["exception"]
