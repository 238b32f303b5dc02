"""``crashfleet clusters`` and ``crashes`` on an embedded run's data directory: headers, times,
titles, terminal-safe host text, and ``--json`` with the exact strings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from signature import Finding, Frame, SignatureInput, compute_signature
from store import CrashRecord, CrashStore

EVIL_HOST = "host\x1b[2J\x1b]0;pwned\x07"
EVIL_KERNEL = "6.1\u202eevil"


def _fill(data: Path) -> str:
    sig = compute_signature(SignatureInput(
        "page_fault", Frame("fn\x1b[31m", "mod"), (), "GOE", (Finding("bug", "mod\x07"),)))
    store = CrashStore(f"sqlite:///{data / 'crashfleet.sqlite'}")
    store.migrate()
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    store.record(CrashRecord(
        event_id="crash-1", host=EVIL_HOST, machine_id="m1", kernel_release=EVIL_KERNEL,
        build_id=None, crash_time=at, analyzed_at=at, dump_key=None, report_key="r.json",
        signature=sig, findings=({"kind": "bug", "module": "mod\x07"},), partial=False))
    store.dispose()
    return sig.id


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    return subprocess.run([sys.executable, "-m", "crashfleet.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_clusters_and_crashes_from_a_data_directory(tmp_path: Path) -> None:
    cid = _fill(tmp_path)
    r = _cli("clusters", "--data", str(tmp_path))
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0]
    assert header.split()[:5] == ["CLUSTER", "COUNT", "HOSTS", "FIRST", "SEEN"]
    assert "2026-11-25 12:00" in r.stdout and cid in r.stdout
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
    assert "6.1\\u202eevil" in r.stdout and "fn\\x1b[31m" in r.stdout
    r = _cli("crashes", "--data", str(tmp_path), "--cluster", cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:3] == ["TIME", "HOST", "KERNEL"]
    assert "host\\x1b[2J" in r.stdout and "\x1b" not in r.stdout
    as_json = json.loads(_cli("crashes", "--data", str(tmp_path), "--cluster", cid,
                              "--json").stdout)
    assert as_json[0]["host"] == EVIL_HOST and as_json[0]["kernel"] == EVIL_KERNEL
    clusters = json.loads(_cli("clusters", "--data", str(tmp_path), "--json").stdout)
    assert clusters[0]["kernels"] == [EVIL_KERNEL] and clusters[0]["title"]


def test_data_directory_without_a_store_is_a_usage_error(tmp_path: Path) -> None:
    r = _cli("clusters", "--data", str(tmp_path / "nope"))
    assert r.returncode == 2 and "holds no crashfleet.sqlite" in r.stderr


def test_wrapping_never_cuts_an_escape() -> None:
    from crashfleet.termviews import cluster_table
    from foundation.text import term_safe
    from store import ClusterRow

    now = datetime(2026, 12, 1, tzinfo=UTC)
    sig = "x" * 103 + "\u202e" + "y" * 10 + "\\" + "z" * 120
    row = ClusterRow(id="c1", signature=sig, panic_class="oops", taint="G", findings=(),
                     count=1, hosts=1, kernels=("6.1",), first_seen=now, last_seen=now)
    body = [ln.strip() for ln in cluster_table([row]).splitlines()[2:]]
    assert "".join(body) == term_safe(sig)
    assert body[1].startswith("\\u202e")
