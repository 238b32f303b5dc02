"""`crashfleet analyze` on a terminal: the summary and the kernel log of a crafted dump
(`--log`) and an error about a file with a crafted name reach the terminal escaped; through a
pipe, `--log` stays what `makedumpfile --dump-dmesg` prints (its own escaping, CR raw)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from .patchdump import hostile_dump

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "tests" / "fixtures" / "dumps" / "5.10-null-1--mkd-erase" / "vmcore.flat"
# Clear the screen, return to the line's start, retitle the terminal, cursor home: 15 bytes.
ANSI = b"\x1b[2J\r\x1b]0;pw\x07\x1b[H"


def _on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; returns (exit code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "crashfleet.cli", *args],
                            stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=120), out


def test_log_on_a_terminal_is_escaped_and_exact_through_a_pipe(tmp_path: Path) -> None:
    dump = hostile_dump(BASE, tmp_path / "ansi.dump", [(b"Fatal exception", ANSI)])
    code, out = _on_a_terminal("analyze", "--log", str(dump))
    assert code == 0
    assert b"\x1b" not in out and b"\x07" not in out
    assert b"not syncing: \\x1b[2J\\x0d\\x1b]0;pw\\x07\\x1b[H" in out
    piped = subprocess.run([sys.executable, "-m", "crashfleet.cli", "analyze", "--log",
                            str(dump)], capture_output=True, timeout=120)
    # makedumpfile's own escaping, CR kept raw: byte for byte what --dump-dmesg prints
    assert piped.returncode == 0 and b"not syncing: \\x1b[2J\r\\x1b]0;pw" in piped.stdout


def test_summary_and_errors_on_a_terminal_are_escaped(tmp_path: Path) -> None:
    dump = hostile_dump(BASE, tmp_path / "ansi.dump", [(b"Fatal exception", ANSI)])
    code, out = _on_a_terminal("analyze", str(dump))
    assert code == 0 and b"\x1b" not in out
    assert b"Kernel panic - not syncing: \\x1b[2J" in out
    bad = os.path.join(os.fsencode(tmp_path), b"\x1b]0;owned\x07.dump")
    with open(bad, "wb") as f:
        f.write(b"root:*:19000:0:99999:7:::\n" * 10)
    code, out = _on_a_terminal("analyze", os.fsdecode(bad))
    assert code == 1 and b"\x1b" not in out and b"\x07" not in out
    assert b"unknown dump format" in out and b"root:*" not in out
