"""Memory analysis with symbols on real Debian-kernel dumps, against independent oracles:
``crash`` (bt, mod) for frames, modules and the crashed task, the fixture manifest for the
scenario (which dumps are a use after module unload)."""

from __future__ import annotations

import re

import pytest

from symbol_cache import SymbolPack, build_pack
from vmcore.analyze import analyze
from vmcore.deep.context import Context
from vmcore.deep.tasks import list_tasks
from vmcore.formats import open_dump
from vmcore.report import Report
from vmcore.source import LocalFileSource
from vmcore.vmcoreinfo import parse_vmcoreinfo
from vmcore.x86_64 import KernelMemory

from .conftest import Case, debug_vmlinux, real_cases

_PACKS: dict[str, SymbolPack] = {}
_REPORTS: dict[str, Report] = {}


def _pack(release: str) -> SymbolPack:
    """The pack of ``release``'s debug vmlinux, fetched as the symbol-cache tests do."""
    if release not in _PACKS:
        _PACKS[release] = build_pack(debug_vmlinux(release), source="test")
    return _PACKS[release]


def _report(case: Case) -> Report:
    if case.name not in _REPORTS:
        pack = _pack(case.manifest["kernel_release"])
        with LocalFileSource(case.dump) as src:
            _REPORTS[case.name] = analyze(src, symbols=lambda _info: pack).report
    return _REPORTS[case.name]


_BT_FRAME = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at [0-9a-f]+(?: \[(\S+)\])?")
_BT_EXC = re.compile(r"^\s*\[exception RIP: (.*)\]")
_BT_RIP = re.compile(r"^\s*RIP: ([0-9a-f]+)\s")
_BT_AT = re.compile(r" at ([0-9a-f]+)")
_BT_HEAD = re.compile(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: \"(.*)\"")
_INIT_START = re.compile(r"^_MODULE_INIT(?:_TEXT)?_START_(\w+)$")


def _crash_frames(bt: str) -> list[tuple[str, str | None, bool]]:
    """crash's frames as (name, module, is-exception-RIP); unknown addresses are left out
    (crash prints them as 'unknown or invalid address' or not at all). A frame right after
    an exception RIP at that very address is crash listing the RIP twice (it finds the RIP
    again in the stack slot below the exception frame's RSP): left out too."""
    out: list[tuple[str, str | None, bool]] = []
    exc_rip = None
    for line in bt.splitlines():
        if m := _BT_FRAME.match(line):
            at = _BT_AT.search(line)
            if exc_rip is not None and at is not None and int(at.group(1), 16) == exc_rip:
                # crash lists the function the exception interrupted a second time, as the
                # frame at the exception RIP itself (WARN and BUG-on-data-corruption dumps)
                exc_rip = None
                continue
            exc_rip = None
            out.append((m.group(1), m.group(2), False))
        elif (m := _BT_EXC.match(line)) and not m.group(1).startswith("unknown"):
            out.append((m.group(1).split("+")[0], None, True))
        elif (m := _BT_RIP.match(line)) and out and out[-1][2]:
            exc_rip = int(m.group(1), 16)
    return out


def _same(crash: tuple[str, str | None, bool], ours: tuple[str, str | None]) -> bool:
    name = crash[0]
    if m := _INIT_START.match(name):
        # crash names a module's init text by a made-up marker symbol; ours is the real one
        return ours[1] == m.group(1)
    return name == ours[0]


@pytest.mark.parametrize("case", real_cases())
def test_frames_equal_crash_bt(case: Case) -> None:
    bt = case.oracle("crash_bt")
    if bt is None:
        pytest.skip("no crash bt oracle")
    if "possibly bogus exception frame" in bt:
        pytest.skip("crash could not decode the exception frame (5.10, IRQ stack)")
    mem = _report(case).memory
    assert mem is not None, _report(case).notes
    crash = _crash_frames(bt)
    entry = [i for i, f in enumerate(crash) if f[0].startswith("asm_") and not f[2]]
    ours = list(mem.frames)
    exc = [i for i, f in enumerate(ours) if f.exception]
    mine = [(f.function, f.module) for f in (ours[exc[-1]:] if exc else ours)
            if f.function is not None]
    if entry:
        # from the exception RIP down: the frames below the last exception entry
        want = crash[entry[-1] + 1:]
        assert len(mine) == len(want), (mine, want)
        assert all(_same(w, o) for w, o in zip(want, mine, strict=True)), (mine, want)
    else:
        # No exception (a direct panic): crash starts from its own guess of the panic frame
        # and scans the stack from there, so it may skip frames or pick up a stale return
        # address; drgn (DWARF, with inlined frames) lists every one of ours, in order. So:
        # ours are a subsequence of drgn's, and crash's are a subsequence of ours except for
        # frames drgn does not see either.
        drgn = case.oracle("drgn_bt")
        names: list[str] | None = None
        if drgn is not None and "drgn exited" not in drgn:
            names = [_base(m.group(1)) for m in re.finditer(r"^#\d+\s+(\S+?)[ +]", drgn,
                                                            re.M)]
            assert _subsequence([_base(str(o[0])) for o in mine], names), (mine, names)
        crash_names = [w[0] for w in crash]
        if names is not None:
            stale = {n for n in crash_names if n not in {o[0] for o in mine}
                     and _base(n) not in names}
            crash_names = [n for n in crash_names if n not in stale]
        assert _subsequence(crash_names, [str(o[0]) for o in mine]), (mine, crash)
    assert mem.unwind_complete, mem.notes


def _base(name: str) -> str:
    """A function name without the compiler's clone suffixes; the syscall entry's label as
    the function that holds it."""
    name = name.split(".")[0]
    return "entry_SYSCALL_64" if name == "entry_SYSCALL_64_after_hwframe" else name


def _subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


@pytest.mark.parametrize("case", real_cases())
def test_modules_equal_crash_mod(case: Case) -> None:
    text = case.oracle("crash_mod")
    if text is None:
        pytest.skip("no crash mod oracle")
    want = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            want.append((int(parts[0], 16), parts[1], int(parts[2], 16), int(parts[3])))
    mem = _report(case).memory
    assert mem is not None
    got = sorted((m.address, m.name, m.base, m.size) for m in mem.modules)
    assert got == sorted(want)
    assert mem.modules_complete


@pytest.mark.parametrize("case", real_cases())
def test_task_equals_crash(case: Case) -> None:
    bt = case.oracle("crash_bt")
    ps = case.oracle("crash_ps")
    if bt is None or ps is None:
        pytest.skip("no crash bt/ps oracle")
    m = _BT_HEAD.match(bt.splitlines()[0])
    assert m
    mem = _report(case).memory
    assert mem is not None and mem.task_address is not None
    assert (mem.pid, mem.task_address, mem.cpu, mem.comm) == \
        (int(m.group(1)), int(m.group(2), 16), int(m.group(3)), m.group(4))
    row = next(r.split() for r in ps.splitlines() if f" {m.group(2)} " in r)
    assert row[5 if row[0] == ">" else 4] == mem.state


@pytest.mark.parametrize("case", real_cases())
def test_use_after_unload_finding(case: Case) -> None:
    r = _report(case)
    uau = [f for f in r.findings if f.kind == "use-after-module-unload"]
    if case.manifest.get("scenario") == "uau":
        assert [f.module for f in uau] == [case.manifest["last_unloaded"]]
        assert uau[0].address is not None and uau[0].evidence
        assert uau[0].thread and uau[0].thread.startswith(case.manifest["crashed_task"]["comm"])
    else:
        assert uau == []
    assert r.symbolized


@pytest.mark.parametrize("case", real_cases())
def test_memory_signature_clusters_like_the_log(case: Case) -> None:
    """The memory unwind must not move a crash to another cluster: its signature equals the
    log-based one (whose clustering the signature tests check against the manifests)."""
    from signature import compute_signature
    from signature.inputs import signature_input

    r = _report(case)
    with LocalFileSource(case.dump) as src:
        log_only = analyze(src).report
    mem_inp = signature_input(r)
    # a hung-task panic's task is khungtaskd: the blocked task's stack is the log's
    assert mem_inp.source == ("log" if r.panic.klass == "hung_task" else "memory")
    assert compute_signature(mem_inp).text == compute_signature(signature_input(log_only)).text


@pytest.mark.parametrize("case", real_cases())
def test_bug_and_warn_locations_from_memory_equal_the_log(case: Case) -> None:
    """The bug table in memory names the same file:line as the kernel log (makedumpfile's
    dmesg, an independent reading)."""
    dmesg = case.oracle("dmesg")
    if dmesg is None:
        pytest.skip("no dmesg oracle")
    m = re.search(r"kernel BUG at (\S+?)!|WARNING: CPU: \d+ PID: \d+ at (\S+)", dmesg)
    r = _report(case)
    kinds = [f for f in r.findings if f.kind in ("bug", "warning")]
    if m is None:
        assert kinds == []
        return
    want = m.group(1) or m.group(2)
    assert len(kinds) == 1
    assert f"the bug table in memory records {'BUG' if m.group(1) else 'WARNING'} at {want}" \
        in kinds[0].evidence


def test_cli_vmlinux_shows_memory(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from crashfleet.commands import analyze as cli

    cases = [c for c in real_cases(scenario="uau") if c.values and c.values[0] is not None]
    if not cases:
        pytest.skip("no use-after-unload fixture")
    case = cases[0].values[0]
    assert isinstance(case, Case)
    vmlinux = debug_vmlinux(case.manifest["kernel_release"])
    rc = cli.main([str(case.dump), "--json", "--vmlinux", str(vmlinux)])
    doc = json.loads(capsys.readouterr().out)
    assert rc in (0, cli.EXIT_PARTIAL)
    assert doc["symbolized"] is True
    assert doc["memory"]["pid"] == case.manifest["crashed_task"]["pid"]
    assert [f["kind"] for f in doc["findings"]] == ["use-after-module-unload"]
    assert cli.main([str(case.dump), "--vmlinux", str(vmlinux)]) in (0, cli.EXIT_PARTIAL)
    text = capsys.readouterr().out
    assert "finding:" in text and "use-after-module-unload" in text
    assert "kthread+0x" in text


@pytest.mark.parametrize("case", real_cases())
def test_task_list_equals_crash_ps(case: Case) -> None:
    """The processes on the task list are crash's ``ps`` minus the other CPUs' idle tasks
    (pid 0, on no list), with the same comm and state."""
    ps = case.oracle("crash_ps")
    if ps is None:
        pytest.skip("no crash ps oracle")
    want = set()
    for row in ps.splitlines()[1:]:
        parts = row.lstrip(">").split()
        if len(parts) >= 9:
            want.add((int(parts[0]), int(parts[3], 16), parts[4],
                      " ".join(parts[8:]).strip("[]")))
    r = _report(case)
    assert r.memory is not None and r.memory.tasks_complete
    pack = _pack(case.manifest["kernel_release"])
    with LocalFileSource(case.dump) as src:
        dump = open_dump(src)
        assert dump.vmcoreinfo_blob is not None
        info = parse_vmcoreinfo(dump.vmcoreinfo_blob)
        mem = KernelMemory(dump.read_phys, info,
                           dump.kdump_header.phys_base if dump.kdump_header else None)
        tasks, complete = list_tasks(Context(mem, pack, info.kernel_offset or 0))
    assert complete and r.memory.tasks == len(tasks)
    got = {(t.pid, t.address, t.state, t.comm) for t in tasks}
    idle_elsewhere = {w for w in want if w[0] == 0 and w not in got}
    assert got == want - idle_elsewhere
