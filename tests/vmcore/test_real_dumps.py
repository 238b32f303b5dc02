"""Real Debian-kernel dumps against independent oracles: makedumpfile --dump-dmesg for the log,
crash (sys, bt, log, mod) for the summary fields."""

from __future__ import annotations

import argparse
import io
import random
import re
import sys

import pytest

from vmcore.analyze import analyze, read_header
from vmcore.formats import open_dump
from vmcore.formats.flattened import FlatIndex, FlatIndexBuilder, build_index
from vmcore.logread import read_log
from vmcore.printk import format_dmesg
from vmcore.source import BytesSource, LocalFileSource

from .conftest import Case, real_cases


def _crash_field(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{name}: (.*)$", text, re.M)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("case", real_cases())
def test_log_equals_makedumpfile(case: Case) -> None:
    want = case.oracle_bytes("dmesg")
    if want is None:
        pytest.skip("no makedumpfile oracle")
    with LocalFileSource(case.dump) as src:
        _info, log = read_log(open_dump(src))
    assert not log.partial, log.notes
    got = format_dmesg(log.records)
    assert got == want


@pytest.mark.parametrize("case", real_cases())
def test_cli_log_output(case: Case, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    want = case.oracle_bytes("dmesg")
    if want is None:
        pytest.skip("no makedumpfile oracle")
    from crashfleet.cli import App
    from crashfleet.commands import analyze as cli

    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--config")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", str(case.dump), "--log"])
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="utf-8"))
    assert args.func(args, App(args)) == 0
    sys.stdout.flush()
    assert buf.getvalue() == want


@pytest.mark.parametrize("case", real_cases())
def test_summary_matches_crash(case: Case) -> None:
    sys_txt, bt_txt, log_txt = case.oracle("crash_sys"), case.oracle("crash_bt"), \
        case.oracle("crash_log")
    if not (sys_txt and bt_txt and log_txt):
        pytest.skip("no crash oracles")
    with LocalFileSource(case.dump) as src:
        r = analyze(src).report
    assert not r.partial, r.notes
    # crash `sys`
    assert r.kernel.release == _crash_field(sys_txt, "RELEASE")
    # PANIC: "Kernel panic - not syncing: X", or for a kdump taken before panic() printed,
    # "Oops: 0010 [#1] PREEMPT SMP NOPTI" (check log for details)
    panic = _crash_field(sys_txt, "PANIC") or ""
    m = re.fullmatch(r'"(.*)"(?: \(check log for details\))?', panic)
    assert m, panic
    assert r.panic.line == m[1]
    # crash `bt`: PID: 94  TASK: ...  CPU: 1  COMMAND: "vdeferio8_1"
    m = re.search(r'PID: (\d+)\s+TASK: \S+\s+CPU: (\d+)\s+COMMAND: "(.*)"', bt_txt)
    assert m, bt_txt
    assert (r.task.pid, r.task.cpu, r.task.comm) == (int(m[1]), int(m[2]), m[3])
    # crash `log`: taint column string, Modules linked in, last unloaded
    cpu_line = re.search(r"\] CPU: \d+ .*PID: \d+ Comm: .*$", log_txt, re.M)
    assert cpu_line
    tm = re.search(r"Tainted: ([A-Z][A-Z ]*?)\s+\d", cpu_line[0])
    if tm:
        assert r.taint is not None
        assert r.taint.letters == tm[1].replace(" ", "")
    else:
        assert "Not tainted" in cpu_line[0]
        assert r.taint is None or r.taint.flags == ()
    mods = re.search(r"\] Modules linked in:(.*)$", log_txt, re.M)
    if mods:
        assert r.modules is not None
        rest = mods[1]
        lu = re.search(r"\[last unloaded: ([\w-]+)", rest)
        assert r.modules.last_unloaded == (lu[1] if lu else None)
        listed = [t.split("(")[0] for t in re.sub(r"\[last unloaded:[^\]]*\]", "", rest).split()]
        assert list(r.modules.loaded) == listed


@pytest.mark.parametrize("case", real_cases())
def test_modules_match_crash_mod(case: Case) -> None:
    mod_txt = case.oracle("crash_mod")
    if not mod_txt:
        pytest.skip("no crash mod oracle")
    with LocalFileSource(case.dump) as src:
        r = analyze(src).report
    crash_names = {ln.split()[1] for ln in mod_txt.splitlines()[1:] if len(ln.split()) > 2}
    if r.modules is None:
        pytest.skip("no Modules linked in line (panic without oops)")
    assert set(r.modules.loaded) == crash_names


@pytest.mark.parametrize("case", real_cases())
def test_header_and_manifest(case: Case) -> None:
    m = case.manifest
    with LocalFileSource(case.dump) as src:
        h = read_header(src)
        fetched = src.bytes_fetched
    assert h.format == m["format"]
    assert h.compression == m["compression"]
    assert h.kernel_release == m["kernel_release"]
    assert h.build_id == m["build_id"]
    assert fetched < 256 * 1024  # the header peek reads a few blocks, not the dump


@pytest.mark.parametrize("case", real_cases(format="kdump-flattened"))
def test_flat_index_streamed_equals_scanned(case: Case) -> None:
    data = case.dump.read_bytes()
    scanned = build_index(BytesSource(data))
    b = FlatIndexBuilder()
    rng = random.Random(4)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 16, 4095, 65536, 1 << 20])
        b.feed(data[pos : pos + n])
        pos += n
    streamed = b.finish()
    assert streamed == scanned
    assert streamed.complete
    stored = FlatIndex.from_bytes(streamed.to_bytes())
    assert stored == streamed
    src = BytesSource(data)
    _info, log = read_log(open_dump(src, stored))
    want = case.oracle_bytes("dmesg")
    if want is not None:
        assert format_dmesg(log.records) == want


REQUIRED = ["kernel.release", "kernel.build_id", "panic.message", "panic.class", "task.comm",
            "task.pid", "task.cpu", "taint.flags", "modules.loaded", "modules.last_unloaded"]


@pytest.mark.parametrize("case", real_cases())
def test_json_report_fields(case: Case) -> None:
    import json

    with LocalFileSource(case.dump) as src:
        doc = json.loads(analyze(src).report.to_json())
    assert doc["schema"] == "crashfleet.analyzer/report" and doc["version"] == 2
    assert doc["kernel"]["release"] == case.manifest["kernel_release"]
    assert doc["kernel"]["build_id"] == case.manifest["build_id"]
    ct = case.manifest.get("crashed_task") or {}
    if ct:
        assert (doc["task"]["pid"], doc["task"]["cpu"], doc["task"]["comm"]) == (
            ct["pid"], ct["cpu"], ct["comm"])
    for path in REQUIRED:
        head, _, tail = path.partition(".")
        if doc[head] is not None:
            assert tail in doc[head], path
    for f in doc["frames"]:
        assert {"function", "module", "reliable"} <= set(f)
