"""Stores for the web tests: crashes recorded through CrashStore.record (the write path the
analyzer uses), reports and logs in a real local object store, and a hostile crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest import LocalObjectStore
from signature import Finding, Frame, Signature, SignatureInput, compute_signature
from store import CrashRecord, CrashStore

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

UAU = compute_signature(SignatureInput(
    "page_fault", Frame(None), (), "GOE", (Finding("use-after-module-unload", "veeamsnap"),)))
NULL = compute_signature(SignatureInput(
    "page_fault", Frame("ring_poll", "vendor"), (Frame("ring_init", "vendor"),), "GOE",
    (Finding("null-pointer-dereference"),)))
SYSRQ = compute_signature(SignatureInput("sysrq", Frame("sysrq_handle_crash"),
                                         (Frame("__handle_sysrq"),), "G"))
# Looks like NULL (same class, findings, taint, alike frames) but a different first frame:
# its own cluster, and "similar" to NULL's.
NULL2 = compute_signature(SignatureInput(
    "page_fault", Frame("ring_read", "vendor"), (Frame("ring_init", "vendor"),), "GOE",
    (Finding("null-pointer-dereference"),)))

PAYLOAD_SCRIPT = "<script>window.__pwned = 1</script>"
PAYLOAD_IMG = '"><img src=x onerror="window.__pwned = 2">'
PAYLOAD_JS = "javascript:window.__pwned=3"
PAYLOAD_ANSI = "\x1b[31mred\x1b[0m\x1b]0;title\x07"
HOSTILE_HOST = f"evil{PAYLOAD_IMG}/../x?y=1&z#f"
HOSTILE_MODULE = f"mod{PAYLOAD_SCRIPT}"
HOSTILE_COMM = f"{PAYLOAD_JS}{PAYLOAD_ANSI}"
# What signature/explain.py stores, carrying the hostile frame and title text.
HOSTILE_EXPLANATION = {
    "source": "log",
    "frames": [{"frame": f"fn{PAYLOAD_SCRIPT} [{HOSTILE_MODULE}]", "text": f"fn{PAYLOAD_SCRIPT}",
                "verdict": "kept", "rule": None, "normalizations": []}],
    "omitted_frames": 0, "normalizations": [],
    "signature": {"id": "x", "text": f"page_fault: fn{PAYLOAD_SCRIPT}", "frames": [],
                  "panic_class": "page_fault", "taint": "GOE", "findings": []},
    "title": {"text": f"{PAYLOAD_IMG} {PAYLOAD_ANSI}", "kind": "fallback", "rule": None,
              "fact": None, "function": None, "alternatives": []},
}


def crash_record(event: str, sig: Signature, *, host: str = "h1",
                 kernel: str | None = "6.1.0-56-cloud-amd64", at: datetime = NOW,
                 dump_key: str | None = None, report_key: str | None = None,
                 findings: tuple[dict[str, Any], ...] | None = None,
                 explanation: dict[str, Any] | None = None,
                 arch: str | None = "x86_64") -> CrashRecord:
    if findings is None:
        findings = tuple({"kind": f.split("(")[0],
                          "module": f.split("(")[1][:-1] if "(" in f else None}
                         for f in sig.findings)
    return CrashRecord(
        event_id=event, host=host, machine_id=f"m-{host}"[:64], kernel_release=kernel,
        build_id=None, crash_time=at, analyzed_at=at + timedelta(minutes=1),
        dump_key=dump_key, report_key=report_key or f"dumps/{event}.dmesg.report.json",
        signature=sig, findings=findings, partial=False, explanation=explanation, arch=arch)


def report_for(sig: Signature, *, comm: str = "insmod", modules: tuple[str, ...] = ("vendor",),
               title: str | None = None) -> dict[str, Any]:
    """A stored report of the shape the analyzer writes (only the fields pages read)."""
    body: dict[str, Any] = {
        "schema": "crashfleet.analyzer/report", "version": 1,
        "kernel": {"release": "6.1.0-56-cloud-amd64", "version": "#1 SMP Debian",
                   "build_id": None},
        "panic": {"message": "Fatal exception", "class": sig.panic_class, "qualifiers": [],
                  "headline": "BUG: kernel NULL pointer dereference, address: 0000000000000008",
                  "line": "Kernel panic - not syncing: Fatal exception"},
        "task": {"comm": comm, "pid": 84, "cpu": 0, "uid": 0},
        "taint": {"string": "G           OE", "flags": ["O", "E"], "letters": "GOE",
                  "names": ["OOT_MODULE", "UNSIGNED_MODULE"],
                  "meanings": ["out-of-tree module loaded", "unsigned module loaded"],
                  "mask": 12288},
        "modules": {"loaded": list(modules), "taints": {modules[0]: "OE"},
                    "last_unloaded": modules[-1], "last_unloaded_taints": "OE"},
        "rip": {"text": "ring_poll+0xc/0x1e [vendor]", "function": "ring_poll",
                "offset": 12, "size": 30, "module": "vendor", "address": None},
        "fault": {"address": 8, "error_code": 0, "error_flags": [], "access": "read",
                  "privilege": "supervisor", "mode": "kernel", "reason": "not-present page"},
        "frames": [{"function": "ring_init", "offset": 16, "size": 64, "module": "vendor",
                    "address": None, "reliable": True, "context": None},
                   {"function": "do_one_initcall", "offset": 4, "size": 400, "module": None,
                    "address": None, "reliable": False, "context": None}],
        "findings": [{"kind": "null-pointer-dereference", "module": modules[0],
                      "address": 0xffffffffc0000000, "thread": f"{comm} (pid 84)",
                      "evidence": [f"the faulting address is in {modules[0]}"]}],
        "notes": [], "partial": False,
    }
    if title is not None:
        body["title"] = title
    return body


LOG = "\n".join([
    "Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)",
    "vendor: loading out-of-tree module taints kernel.",
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "#PF: supervisor read access in kernel mode",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 0 PID: 84 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1",
    "RIP: 0010:ring_poll+0xc/0x1e [vendor]",
    "Call Trace:",
    " <TASK>",
    " ring_init+0x10/0x40 [vendor]",
    " </TASK>",
    "---[ end trace 0000000000000000 ]---",
    "Kernel panic - not syncing: Fatal exception",
])


@dataclass
class Filled:
    store: CrashStore
    objects: LocalObjectStore
    hostile_event: str
    hostile_cluster: str


def fill(store: CrashStore, objects: LocalObjectStore) -> Filled:
    """Four clusters over two weeks, plus one hostile crash (log-only: its log is an object).

    UAU: 6 crashes, 3 hosts, kernels 5.10 and 6.1, mostly in the last 3 days (rising);
    NULL: 3 crashes, one host; NULL2: 1; SYSRQ: 2, two weeks ago.
    """
    plan = [("u1", UAU, "web-1", "5.10.0-32-cloud-amd64", 9), ("u2", UAU, "web-2",
            "6.1.0-56-cloud-amd64", 2), ("u3", UAU, "web-3", "6.1.0-56-cloud-amd64", 1),
            ("u4", UAU, "web-1", "6.1.0-56-cloud-amd64", 1), ("u5", UAU, "web-2",
            "6.1.0-56-cloud-amd64", 0), ("u6", UAU, "web-2", "6.1.0-56-cloud-amd64", 0),
            ("n1", NULL, "db-1", "6.1.0-56-cloud-amd64", 5), ("n2", NULL, "db-1",
            "6.1.0-56-cloud-amd64", 4), ("n3", NULL, "db-1", "6.12.0-1-cloud-amd64", 3),
            ("m1", NULL2, "db-2", "6.1.0-56-cloud-amd64", 3),
            ("s1", SYSRQ, "lab-1", "5.10.0-32-cloud-amd64", 14),
            ("s2", SYSRQ, "lab-2", None, 13)]
    for event, sig, host, kernel, days_ago in plan:
        at = NOW - timedelta(days=days_ago, hours=1)
        store.record(crash_record(event, sig, host=host, kernel=kernel, at=at))
        objects.put(f"dumps/{event}.dmesg.report.json", json.dumps(report_for(sig)).encode())
        objects.put(f"dumps/{event}.dmesg", LOG.encode())
    # The log-only convention: no dump key, report beside the shipped log.
    evil_sig = compute_signature(SignatureInput(
        "page_fault", Frame(f"fn{PAYLOAD_SCRIPT}", HOSTILE_MODULE), (), "GOE",
        (Finding("use-after-module-unload", HOSTILE_MODULE),)))
    evil = "evil-1"
    store.record(crash_record(evil, evil_sig, host=HOSTILE_HOST, kernel=f"6.1{PAYLOAD_IMG}",
                              at=NOW - timedelta(minutes=30),
                              report_key=f"dumps/{evil}.dmesg.report.json",
                              explanation=HOSTILE_EXPLANATION, arch="arm64"))
    report = report_for(evil_sig, comm=HOSTILE_COMM, modules=(HOSTILE_MODULE, PAYLOAD_JS),
                        title=f"{PAYLOAD_SCRIPT} in {PAYLOAD_IMG}")
    objects.put(f"dumps/{evil}.dmesg.report.json", json.dumps(report).encode())
    hostile_log = LOG.replace("insmod", HOSTILE_COMM).replace(
        "vendor: loading", f"{PAYLOAD_SCRIPT} {PAYLOAD_IMG} {PAYLOAD_ANSI} loading")
    objects.put(f"dumps/{evil}.dmesg", hostile_log.encode())
    return Filled(store, objects, evil, evil_sig.id)


@pytest.fixture
def filled(tmp_path: Path) -> Filled:
    store = CrashStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    objects = LocalObjectStore(tmp_path / "objects")
    f = fill(store, objects)
    yield f  # type: ignore[misc]
    store.dispose()


@pytest.fixture
def make_client(filled: Filled) -> Callable[..., Any]:
    from fastapi.testclient import TestClient

    from web import create_app

    def make(**kwargs: Any) -> TestClient:
        app = create_app(filled.store, objects=filled.objects, clock=lambda: NOW, **kwargs)
        return TestClient(app)

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()
