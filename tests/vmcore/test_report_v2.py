"""Report schema version 2: addresses as hex strings, no JSON integer a double would round,
readers of both versions, and the log-based findings in ``findings[]``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vmcore.analyze import analyze, analyze_log
from vmcore.findings import log_findings
from vmcore.report import (
    SCHEMA_VERSION,
    SYMBOLS_NONE,
    CpuState,
    DumpInfo,
    FindingInfo,
    KernelInfo,
    PanicInfo,
    Report,
    TaskInfo,
    address_of,
)
from vmcore.source import LocalFileSource

from ..fixtures.identity import read_oracle
from .conftest import COMMITTED, Case, real_cases

_HEX = re.compile(r"0x[0-9a-f]+")


def _ints(value: object, path: str = "") -> list[tuple[str, int]]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _ints(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _ints(v, f"{path}[{i}]")]
    if isinstance(value, int) and not isinstance(value, bool):
        return [(path, value)]
    return []


def _addresses(doc: dict) -> list[object]:
    out: list[object] = [doc["kernel"]["kernel_offset"], doc["kernel"]["phys_base"]]
    if doc["rip"] is not None:
        out.append(doc["rip"]["address"])
    if doc["fault"] is not None:
        out.append(doc["fault"]["address"])
    out += [f["address"] for f in doc["frames"]]
    out += [c[k] for c in doc["cpus"] for k in ("rip", "rsp")]
    out += [f["address"] for f in doc["findings"]]
    return [a for a in out if a is not None]


@pytest.mark.parametrize("case", real_cases())
def test_real_report_has_hex_addresses_and_no_big_integers(case: Case) -> None:
    with LocalFileSource(case.dump) as src:
        report = analyze(src).report
    doc = json.loads(report.to_json())
    assert doc["version"] == SCHEMA_VERSION == 2
    assert [(p, v) for p, v in _ints(doc) if abs(v) > 2**53] == []
    addrs = _addresses(doc)
    assert addrs and all(isinstance(a, str) and _HEX.fullmatch(a) for a in addrs)
    # what a v2 reader gets back is exactly the record's value
    assert [address_of(c["rip"]) for c in doc["cpus"]] == [c.rip for c in report.cpus]
    assert doc["symbols"] == SYMBOLS_NONE


def _tiny(**kw: object) -> Report:
    base = dict(
        dump=DumpInfo("elf", "none", 1, 4096, "x"),
        kernel=KernelInfo("6.1", None, None, "x86_64", 0x3A000000, 2**64 - 0x10),
        crash_time=None, panic=PanicInfo(None, "panic", (), None), task=TaskInfo(None, None, 0),
        taint=None, modules=None, rip=None, fault=None, bug_location=None, frames=(),
        oopses=(), cpus=(CpuState(0, 1, 0xFFFFFFFF81000000, 0xFFFFC90000003F00),),
        log=None, partial=False)
    base.update(kw)
    return Report(**base)  # type: ignore[arg-type]


def test_hostile_integers_never_reach_json_as_numbers() -> None:
    """A hostile header can put any 64-bit value in an integer field: it is written as a hex
    string, never as a number a double would round."""
    r = _tiny(crash_time=2**63 + 5, dump=DumpInfo("elf", "none", 2**60, 4096, "x"),
              findings=(FindingInfo("bug", None, 2**64 - 1, None, ()),))
    doc = json.loads(r.to_json())
    assert [(p, v) for p, v in _ints(doc) if abs(v) > 2**53] == []
    assert doc["kernel"]["phys_base"] == "0xfffffffffffffff0"
    assert doc["crash_time"] == hex(2**63 + 5)
    assert doc["findings"][0]["address"] == "0xffffffffffffffff"
    assert doc["findings"][0]["source"] == "memory"
    assert doc["dump"]["page_size"] == 4096  # small integers stay numbers


@pytest.mark.parametrize("value,want", [
    (18446744072640761881, 0xFFFFFFFFC04B9019),   # version 1: a JSON number
    ("0xffffffffc04b9019", 0xFFFFFFFFC04B9019),   # version 2
    ("0XFFFFFFFFC04B9019", 0xFFFFFFFFC04B9019),
    (None, None), (True, None), ("ffff", None), ("0x", None), ("0xzz", None),
    ("0x" + "f" * 40, None),                      # longer than 64 bits: not an address
])
def test_address_of_reads_both_versions(value: object, want: int | None) -> None:
    assert address_of(value) == want


def _dmesg_cases() -> list[Case]:
    out = []
    for m in sorted(COMMITTED.glob("*/manifest.json")):
        case = Case(m.parent.name, m.parent, json.loads(m.read_text()))
        if case.oracle("dmesg") is not None:
            out.append(case)
    return out


@pytest.mark.parametrize("case", _dmesg_cases(), ids=lambda c: c.name)
def test_log_findings_exactly_on_their_scenarios(case: Case) -> None:
    """Every committed case's kernel log (makedumpfile's dmesg, on 5.10, 6.1 and 6.12): the
    use-after-unload finding on exactly the use-after-unload crashes, the NULL dereference on
    exactly the NULL-dereference ones, both marked as from the log with their evidence."""
    text = case.oracle_bytes("dmesg")
    assert text is not None
    r = analyze_log(text, source=case.name).report
    kinds = [(f.kind, f.module if f.kind == "use-after-module-unload" else None)
             for f in r.findings]
    want = {"uau": [("use-after-module-unload", case.manifest.get("last_unloaded"))],
            "null": [("null-pointer-dereference", None)],
            "timer": [("null-pointer-dereference", None)],  # a NULL dereference in softirq
            }.get(case.manifest["scenario"], [])
    assert kinds == want
    assert all(f.source == "log" and f.evidence and f.thread for f in r.findings)
    assert r.findings == log_findings(r)


@pytest.mark.parametrize("case", real_cases())
def test_dump_report_carries_log_findings(case: Case) -> None:
    with LocalFileSource(case.dump) as src:
        r = analyze(src).report
    assert [f.source for f in r.findings] == ["log"] * len(r.findings)
    assert len(r.findings) == (case.manifest["scenario"] in ("uau", "null", "timer"))


def test_signature_uses_the_same_log_findings() -> None:
    from signature.inputs import log_findings as sig_findings

    dump = Path(COMMITTED, "5.10-uau-2--mkd-erase")
    text = read_oracle(dump / "dmesg.txt")
    r = analyze_log(text, source="x").report
    assert [(f.kind, f.module) for f in sig_findings(r)] == \
        [("use-after-module-unload", "vendordeferio")]
