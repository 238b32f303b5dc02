"""``crashfleet symbols …`` end to end on the real 6.1 kernel, checked against nm."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from crashfleet.cli import main


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kernel61: Any) -> Path:
    tree = tmp_path / "debug"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / f"vmlinux-{kernel61.release}").symlink_to(kernel61.vmlinux)
    monkeypatch.delenv("CRASHFLEET_CONFIG", raising=False)
    monkeypatch.setenv("CRASHFLEET_SYMBOLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CRASHFLEET_SYMBOLS_SOURCES", "dir")
    monkeypatch.setenv("CRASHFLEET_SYMBOLS_DEBUG_DIRS", str(tree))
    monkeypatch.setenv("CRASHFLEET_SYMBOLS_DISK_CAP_MIB", "64")
    return tmp_path / "cache"


def _nm_lines(vmlinux: Path, names: set[str]) -> dict[str, int]:
    out = subprocess.run(["nm", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    return found


def test_fetch_lookup_ls_gc(cli_env: Path, kernel61: Any,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "symbols", "fetch", kernel61.build_id]) == 0
    assert kernel61.build_id in capsys.readouterr().out
    nm = _nm_lines(kernel61.vmlinux, {"kthread", "ret_from_fork", "schedule"})
    slide = 0x2D000000
    addrs = [f"{nm['kthread'] + 0xDA + slide:x}", f"{nm['schedule'] + slide:x}"]
    # By release: the alias written by the fetch finds the pack without a rebuild.
    assert main(["--log-level", "error", "symbols", "lookup", kernel61.release, *addrs,
                 "--kaslr-offset", f"{slide:x}", "--lines"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = subprocess.run(["addr2line", "-e", str(kernel61.vmlinux), f"{nm['kthread'] + 0xDA:x}"],
                          capture_output=True, text=True, check=True).stdout.split()[0]
    assert out[0].split()[1:] == ["kthread+0xda/0x100", line]
    assert out[1].split()[1].startswith("schedule+0x0/")
    assert main(["--log-level", "error", "symbols", "ls"]) == 0
    assert kernel61.build_id in capsys.readouterr().out
    assert main(["--log-level", "error", "symbols", "gc", "--cap-mib", "0"]) == 0
    assert not list((cli_env / "packs").glob("*.pack"))


def test_import_refuses_wrong_build_id(cli_env: Path, kernel61: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--log-level", "error", "symbols", "import", str(kernel61.vmlinux),
               "--build-id", "ab" * 20])
    assert rc == 1
    err = capsys.readouterr().err
    assert "build-id mismatch" in err and kernel61.build_id in err


def test_unknown_build_id_fails_cleanly(cli_env: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "symbols", "fetch", "cd" * 20]) == 1
    assert "no debug info" in capsys.readouterr().err


def test_bad_address_is_usage_error(cli_env: Path, kernel61: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "symbols", "lookup", kernel61.build_id, "xyz"]) == 2


def test_warm_reports_each_kernel(cli_env: Path, kernel61: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--log-level", "error", "symbols", "warm", kernel61.release, "cd" * 20])
    assert rc == 1  # one of the two has no debug info anywhere
    captured = capsys.readouterr()
    assert kernel61.build_id in captured.out and "cd" * 20 in captured.err


def test_release_name_cannot_escape_cache(cli_env: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "error", "symbols", "lookup", "../../etc/passwd", "0"]) == 1
    assert "not a kernel release name" in capsys.readouterr().err
