"""``crashfleet analyze``: summary, JSON, header, index writing and exit codes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from crashfleet.commands import analyze as cli

from ..vmcore import dumpkit as kit

LOG = [(b"Linux version 6.1.0-test (x) #1", 0, 0),
       (b"BUG: kernel NULL pointer dereference, address: 0000000000000008", 5_000_000, 7),
       (b"#PF: supervisor read access in kernel mode", 5_000_001, 7),
       (b"#PF: error_code(0x0000) - not-present page", 5_000_002, 7),
       (b"Oops: 0000 [#1] PREEMPT SMP NOPTI", 5_000_003, 7),
       (b"CPU: 1 PID: 7 Comm: worker Tainted: G           OE      6.1.0-test #1", 5_000_004, 7),
       (b"RIP: 0010:poll_ring+0xc/0x40 [vendor_mod]", 5_000_005, 7),
       (b"Call Trace:", 5_000_006, 7), (b" <TASK>", 5_000_007, 7),
       (b" poll_init+0x1d/0x1000 [vendor_mod]", 5_000_008, 7), (b" </TASK>", 5_000_009, 7),
       (b"Modules linked in: vendor_mod(OE) [last unloaded: old_mod]", 5_000_010, 7),
       (b"---[ end trace 0000000000000000 ]---", 5_000_011, 7),
       (b"Kernel panic - not syncing: Fatal exception", 5_000_012, 7)]


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    mem, info = kit.printk_memory(LOG, size_bits=12, count_bits=5)
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
    p = tmp_path / "vmcore.flat"
    p.write_bytes(kit.flatten(kit.kdump(pages, info, max_mapnr=len(mem) // 4096)))
    return p


def test_summary(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(dump)]) == 0
    out = capsys.readouterr().out
    for want in ("kdump-flattened, zlib", "6.1.0-test", "0123456789abcdef0123456789abcdef01234567",
                 "Kernel panic - not syncing: Fatal exception", "page_fault (null_dereference)",
                 "poll_ring+0xc/0x40 [vendor_mod]", "worker (pid 7) on CPU 1",
                 "GOE (O: out-of-tree module loaded; E: unsigned module loaded)",
                 "vendor_mod(OE)", "last unloaded: old_mod", "poll_init+0x1d/0x1000 [vendor_mod]",
                 "2023-11-14 22:13:20 UTC",
                 "title:         BUG: kernel NULL pointer dereference in poll_ring [vendor_mod]"):
        assert want in out, want


def test_json_and_log(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(dump), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["panic"]["class"] == "page_fault"
    assert doc["task"] == {"comm": "worker", "pid": 7, "cpu": 1, "uid": None}
    assert doc["modules"]["last_unloaded"] == "old_mod"
    assert doc["frames"][0]["function"] == "poll_init"
    assert doc["title"] == "BUG: kernel NULL pointer dereference in poll_ring [vendor_mod]"
    assert cli.main([str(dump), "--log"]) == 0
    log = capsys.readouterr().out
    assert log.splitlines()[1] == ("[    0.005000] [      T7] BUG: kernel NULL pointer "
                                   "dereference, address: 0000000000000008")


def test_header_and_index(dump: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(dump), "--header"]) == 0
    h = json.loads(capsys.readouterr().out)
    assert (h["format"], h["kernel_release"]) == ("kdump-flattened", "6.1.0-test")
    idx = Path(str(dump) + ".flatindex")
    assert cli.main([str(dump), "--write-flat-index", str(idx)]) == 0
    assert idx.read_bytes()[:8] == b"CFFLATI1"
    assert cli.main([str(dump), "--json"]) == 0  # picks the sidecar index up
    assert json.loads(capsys.readouterr().out)["panic"]["message"] == "Fatal exception"


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junk"
    bad.write_bytes(b"not a dump" * 10)
    assert cli.main([str(bad)]) == 1
    assert "unknown dump format" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing")]) == 1
    mem, info = kit.printk_memory(LOG, size_bits=12, count_bits=5)
    struct.pack_into("<Q", mem, 0x1000 + 24, 1 << 61)  # head_id far from tail_id
    pages = {i // 4096: bytes(mem[i : i + 4096]) for i in range(0, len(mem), 4096)}
    partial = tmp_path / "partial"
    partial.write_bytes(kit.kdump(pages, info, max_mapnr=len(mem) // 4096))
    assert cli.main([str(partial), "--log"]) == cli.EXIT_PARTIAL
