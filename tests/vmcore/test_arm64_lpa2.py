"""52-bit VA (LPA2) on real Debian 6.12 arm64 dumps: QEMU's ELF and kdump-zlib dumps of the
corpus boot ``arm64-6.12-sysrq-1`` (``python3 tests/fixtures/factory/arm64.py 6.12 sysrq 1``;
``-cpu max`` has LPA2, so the kernel runs with 52-bit VAs). Not committed (15 MB and
134 MB) and without a makedumpfile case (1.7.6 refuses 52-bit VAs), so the oracles are the
boot's serial console (the same kernel log, as the guest printed it) and drgn, run here on the
ELF dump with the -dbg vmlinux when the factory's tools are present."""

from __future__ import annotations

import re
import subprocess

import pytest

from vmcore.analyze import analyze
from vmcore.report import Report
from vmcore.source import LocalFileSource

from .conftest import CORPUS
from .test_deep_real import _pack

BOOT = CORPUS / "boots" / "arm64-6.12-sysrq-1"
RELEASE = "6.12.118+deb13-cloud-arm64"
DUMPS = ("qemu-elf", "qemu-zlib")
DRGN = CORPUS.parent / "tools" / "bin" / "drgn"
_TS = re.compile(r"^\[\s*\d+\.\d+\] ")
_REPORTS: dict[tuple[str, str], Report] = {}

pytestmark = pytest.mark.skipif(not (BOOT / ".done").exists(),
                                reason=f"no 6.12 arm64 boot at {BOOT} (the factory makes it)")


def _report(name: str, how: str) -> Report:
    if (name, how) not in _REPORTS:
        kw: dict = {}
        if how == "dump":
            kw["dump_symbols"] = True
        elif how == "pack":
            pack = _pack(RELEASE)
            kw["symbols"] = lambda _info: pack
        with LocalFileSource(BOOT / name) as src:
            _REPORTS[name, how] = analyze(src, **kw).report
    return _REPORTS[name, how]


def _console() -> list[str]:
    text = (BOOT / "console.log").read_text(errors="replace")
    return [_TS.sub("", ln).rstrip("\r") for ln in text.splitlines() if _TS.match(ln)]


@pytest.mark.parametrize("name", DUMPS)
def test_log_and_oops_from_52_bit_memory(name: str) -> None:
    r = _report(name, "log")
    assert not r.partial, r.notes
    assert r.kernel.arch == "arm64" and r.kernel.release == RELEASE
    console = _console()
    assert r.panic.line in console and r.panic.line.startswith("Kernel panic - not syncing")
    cpu = next(ln for ln in console if re.match(r"CPU: \d+ UID: \d+ PID: \d+ Comm: ", ln))
    assert f"PID: {r.task.pid} Comm: {r.task.comm} " in cpu


@pytest.mark.parametrize("name", DUMPS)
@pytest.mark.parametrize("how", ["pack", "dump"])
def test_deep_analysis_on_52_bit(name: str, how: str) -> None:
    r = _report(name, how)
    mem = r.memory
    assert mem is not None, r.notes
    assert (mem.pid, mem.comm) == (r.task.pid, r.task.comm) == (1, "init")
    assert mem.unwind_complete and mem.modules_complete and mem.tasks_complete, mem.notes
    assert mem.tasks is not None and mem.tasks > 10
    assert "qemu_fw_cfg" in {m.name for m in mem.modules}
    names = [f.function for f in mem.frames]
    assert "sysrq_handle_crash" in names and "panic" in names
    # one crash in two files: drgn (which reads the ELF only) has the frames of both
    assert [f.address for f in mem.frames] == _drgn_pcs()


_DRGN_PCS: list[list[int]] = []


def _drgn_pcs() -> list[int]:
    """drgn's real (not inlined) frame addresses of the crashed thread, on the ELF dump."""
    if not DRGN.exists():
        pytest.skip(f"no drgn at {DRGN} (make oracle-tools)")
    if not _DRGN_PCS:
        script = ("t = prog.crashed_thread()\nprint(' '.join(hex(f.pc) for f in "
                  "t.stack_trace() if not f.is_inline))")
        vmlinux = (CORPUS.parent / "kernels" / RELEASE / "vmlinux").resolve()
        out = subprocess.run([str(DRGN), "-q", "-c", str(BOOT / "qemu-elf"), "-s", str(vmlinux),
                              "-e", script], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        _DRGN_PCS.append([int(p, 16) for p in out.stdout.split()])
    return _DRGN_PCS[0]
