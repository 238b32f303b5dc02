# ruff: noqa: E501  (literal kernel log excerpts keep their real line lengths)
"""``crashfleet signature --explain`` on literal reports: every skip names its data-file line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from crashfleet.cli import main
from signature.inputs import sign_report
from store import CrashRecord, CrashStore
from vmcore.analyze import analyze_log

REFCOUNT = b"""\
------------[ cut here ]------------
refcount_t: underflow; use-after-free.
WARNING: CPU: 1 PID: 93 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110
Modules linked in: vendor_x(OE+) qemu_fw_cfg
CPU: 1 PID: 93 Comm: insmod Tainted: G           OE      6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2
RIP: 0010:refcount_warn_saturate+0xba/0x110
Call Trace:
 <TASK>
 ? __warn+0x7d/0xc0
 report_bug+0xe6/0x170
 handle_bug+0x3c/0x70
 exc_invalid_op+0x17/0x70
 asm_exc_invalid_op+0x1a/0x20
 memcpy_erms+0x6/0x10
 ring_put.isra.0+0x30/0x40 [vendor_x]
 ring_init+0x1d/0x1000 [vendor_x]
 do_one_initcall+0x59/0x220
 do_init_module+0x4a/0x1f0
 __do_sys_finit_module+0xac/0x120
 do_syscall_64+0x58/0xc0
 entry_SYSCALL_64_after_hwframe+0x64/0xce
 </TASK>
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: kernel: panic_on_warn set ...
"""


@pytest.fixture
def report_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRASHFLEET_STORE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    p = tmp_path / "report.json"
    p.write_text(analyze_log(REFCOUNT, source="literal").report.to_json())
    return p


def _data_line(name: str, line: int) -> str:
    return resources.files("signature").joinpath("data", name).read_text().splitlines()[line - 1]


def test_explain_names_the_data_file_line_of_every_skip(
        report_json: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["signature", str(report_json), "--explain"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    skipped = [ln for ln in lines if ln.lstrip().startswith("skipped")]
    assert [ln.split()[1] for ln in skipped] == [
        "report_bug", "handle_bug", "exc_invalid_op", "asm_exc_invalid_op"]
    for ln in skipped + [ln for ln in lines if ln.lstrip().startswith("prefix")]:
        m = re.search(r"(skip_frames|prefix_frames)\.txt:(\d+) (\S+)", ln)
        assert m, ln
        assert _data_line(m[1] + ".txt", int(m[2])) == m[3]
    assert "  unreliable  __warn" in out and "  past budget do_syscall_64" in out
    assert "  prefix      memcpy_erms  prefix_frames.txt:" in out
    assert "  kept        ring_put [vendor_x]  (compiler suffix .isra.0 dropped)" in out
    assert "syscall prefix __do_sys_ folded to sys_" in out
    assert "taint 'GOE' -> 'EO' (G and blanks dropped, letters sorted)" in out
    assert re.search(r"title kind:   refcount \(crash_kinds\.txt:\d+\), matched 'location: lib/refcount\.c:28'", out)
    assert "title:        refcount bug in ring_put [vendor_x]" in out
    assert ("signature:    warning | refcount_warn_saturate | memcpy_erms | ring_put [vendor_x]"
            " | ring_init [vendor_x] | do_one_initcall | do_init_module | sys_finit_module [EO]"
            ) in out
    assert "cluster:      no store (the SQLite file does not exist)" in out


def test_json_explanation_and_stored_cluster(
        report_json: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = CrashStore(url)
    store.migrate()
    signed = sign_report(analyze_log(REFCOUNT, source="literal").report)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out = store.record(CrashRecord(
        event_id="e1", host="h", machine_id="m", kernel_release=None, build_id=None,
        crash_time=now, analyzed_at=now, dump_key=None, report_key=None,
        signature=signed.signature, findings=(), partial=False, title=signed.title,
        explanation=signed.explanation.to_dict()))
    store.dispose()
    monkeypatch.setenv("CRASHFLEET_STORE_URL", url)
    assert main(["signature", str(report_json), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cluster"] == {"id": out.cluster_id, "how": "signature"}
    assert doc["title"]["text"] == "refcount bug in ring_put [vendor_x]"
    for f in doc["frames"]:
        if f["verdict"] in ("skipped", "prefix"):
            assert _data_line(f["rule"]["file"], f["rule"]["line"]) == f["rule"]["pattern"]
        else:
            assert f["rule"] is None
    # The stored explanation is the same document (without the lookup).
    stored = CrashStore(url).explanation("e1")
    assert stored == {k: v for k, v in doc.items() if k != "cluster"}


def test_the_analyzer_stored_form_and_bad_input(
        report_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.loads(report_json.read_text())
    body["findings"] = [{"kind": "null-pointer-dereference", "module": None}]  # as stored
    body["signature"] = {"id": "x"}
    stored = tmp_path / "dump.report.json"
    stored.write_text(json.dumps(body))
    assert main(["signature", str(stored), "--no-store"]) == 0
    assert "title:        refcount bug in ring_put [vendor_x]" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**body, "panic": {**body["panic"], "class": 3}}))
    assert main(["signature", str(bad)]) == 1
    assert "report.panic.class: expected str" in capsys.readouterr().err
    bad.write_text("{\x1b[31m")
    assert main(["signature", str(bad)]) == 1
    assert "\x1b" not in capsys.readouterr().err
