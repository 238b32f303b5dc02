"""Real Debian arm64 dumps (``"arch": "arm64"`` cases: QEMU aarch64 boots of the fixture
factory, ``tests/fixtures/factory/arm64_case.py``) against their oracles: the report's task,
pc, taint, modules and panic line against the manifest (from makedumpfile --dump-dmesg and
drgn), and the log byte for byte against makedumpfile --dump-dmesg (the arm64 build)."""

from __future__ import annotations

import pytest

from vmcore.analyze import analyze, read_header
from vmcore.formats import open_dump
from vmcore.logread import read_log
from vmcore.printk import format_dmesg
from vmcore.source import LocalFileSource

from .conftest import Case, real_cases


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_arm64_report_matches_oracles(case: Case) -> None:
    m = case.manifest
    with LocalFileSource(case.dump) as src:
        r = analyze(src).report
        hdr = read_header(src)
    assert not r.partial, r.notes
    assert r.kernel.arch == "arm64"
    assert r.kernel.release == m["kernel_release"] == hdr.kernel_release
    assert r.kernel.build_id == m["build_id"]
    assert r.panic.line == m["panic_line"]
    task = m["crashed_task"]
    assert (r.task.pid, r.task.comm, r.task.cpu) == (task["pid"], task["comm"], task["cpu"])
    assert r.taint is not None and r.taint.letters == m["taint_letters"]
    if m["modules_linked_in_line"] is None:  # sysrq: panic() prints no module list
        assert r.modules is None
    else:
        assert r.modules is not None
        assert sorted(r.modules.loaded) == m["loaded_modules"]
        assert r.modules.last_unloaded == m["last_unloaded"]
    if m["rip_line"] is None:  # sysrq: a direct panic(), no register dump
        assert r.rip is None
    elif m["rip_symbol"] == "unresolved":
        assert r.rip is not None
        assert r.rip.function is None and r.rip.address is not None
        assert m["rip_line"] == f"pc : {r.rip.text}"
    else:
        assert r.rip is not None
        assert r.rip.function == m["rip_symbol"] and r.rip.module == m["rip_module"]
    # every CPU note decoded with the arm64 layout: the stack pointer is a kernel address
    assert r.cpus and all(c.rsp >> 48 == 0xFFFF for c in r.cpus)
    if m["scenario"] == "uau":
        assert r.fault is not None and r.fault.access == "instruction fetch"
        assert r.rip is not None and r.fault.address == r.rip.address


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_arm64_log_equals_makedumpfile(case: Case) -> None:
    want = case.oracle_bytes("dmesg")
    assert want is not None
    with LocalFileSource(case.dump) as src:
        _info, log = read_log(open_dump(src))
    assert not log.partial, log.notes
    assert format_dmesg(log.records) == want


@pytest.mark.parametrize("case", real_cases(arch="arm64"))
def test_arm64_cli_log_output(case: Case, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    from crashfleet.commands.analyze import main

    assert main([str(case.dump), "--log"]) == 0
    assert capfdbinary.readouterr().out == case.oracle_bytes("dmesg")
