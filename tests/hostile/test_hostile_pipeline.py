"""The hostile-input suite: what an attacker with a shell on a host (or a tenant) can put in
a crash directory, through the embedded pipeline (`crashfleet run`).

Hostile dumps are real dumps whose printk text is patched in place (same length, see
:mod:`patchdump`): HTML/JS, quotes, backslashes and newlines (metric labels), ANSI and OSC
sequences, format strings, invalid UTF-8, NUL, bidi controls, in the panic message, the
faulting function and the module name; each is filed under a hostile host directory name.
Beside them, the filesystem attacks: an invalid UTF-8 file name and host directory, a hard
link and a symbolic link to a secret outside the spool, a FIFO, a file of another owner, and
12,000 junk files beside a real dump.

Checks: every real dump stored; nothing outside the spool shipped or quoted; every log line
valid JSON; /metrics accepted by prometheus_client's parser and ``promtool check metrics``;
text outputs free of raw control characters; JSON outputs valid; SIGTERM exit within 10 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .patchdump import hostile_dump

REPO = Path(__file__).resolve().parents[2]
DUMPS = REPO / "tests" / "fixtures" / "dumps"
BASE = DUMPS / "5.10-null-1--mkd-erase" / "vmcore.flat"  # panics in nullring_poll
OTHER = DUMPS / "5.10-uau-2--mkd-erase" / "vmcore.flat"
SECRET = b"root:*:19000:0:99999:7:::SECRET-7f3a-shadow\n"
FOREIGN = b"FOREIGN-7f3a-" * 400
# Nothing a terminal acts on may reach it raw: C0/C1 controls (but the line feed), DEL,
# bidi controls, lone surrogates.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                         "\u2066-\u2069\ud800-\udfff]")


def fit(payload: bytes | str, n: int) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return (raw + b"_" * n)[:n]


# (host directory name, panic text for "Fatal exception", function for "nullring_poll",
#  module for "vendor_nullring")
VARIANTS: dict[str, tuple[bytes, bytes, bytes, bytes]] = {
    "html": (b"<img src=x onerror=alert(1)>", b"<script>x</sc>!", b'"><img src=x>',
             b"<b>'&amp;\"</b>"),
    "labels": (b'h"\\\n}{x="y', b'a"b\\c\nd}{e="\\x', b'q"\\\n}{x="y\\"z',
               b'm"\\n{le="1"}\\\n'),
    "ansi": (b"\x1b[2J\x1b]0;host\x07", b"\x1b[2J\x1b]0;pwn\x07\x1b[H",
             b"\x1b]8;;http:\x1b\\x", b"\x9b31m\x1b[5mred"),
    "format": (b"%s%n{0}${x}", b"%s%n%x{0}${x}%p", b"%n%n{}{0}%s%d", b"{{7*7}}${7*7}%%"),
    "utf8": (b"host-utf8", b"\xff\xfe\xc3(\xa0\xa1\xe2\x82(\xf0\x90(\xbc\xed\xa0",
             b"x\xc0\xafy\xed\xa0\x80zz\xf8\x88\x80\x80", b"\xef\xbf\xbe\xef\xbb\xbfmod\xffab"),
    "nul": (b"nul\x01\x7f", b"Fatal\x00exception", b"nullring\x00poll", b"vendor\x00nullring"),
    "bidi": ("host\u202eevil".encode(), "\u202eFatal\u2066x".encode(),
             "\u202epoll\u200fab".encode(), "\u2067mod\u061cabc".encode()),
}


@dataclass
class Run:
    spool: Path
    data: Path
    env: dict[str, str]
    dumps: dict[str, Path] = field(default_factory=dict)  # hostile dumps by variant
    stored: int = 0  # real dumps put in the spool
    stdout: str = ""
    stderr: str = ""
    metrics: str = ""
    exit_code: int | None = None


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "crashfleet.cli", *args], env=env,
                          capture_output=True, timeout=300)


def _spool(root: Path) -> tuple[Path, dict[str, Path], int]:
    spool = root / "spool"
    spool.mkdir()
    made = root / "made"
    made.mkdir()
    dumps: dict[str, Path] = {}
    for name, (host, panic, fn, mod) in VARIANTS.items():
        host_dir = os.path.join(os.fsencode(spool), host)
        os.mkdir(host_dir)
        out = hostile_dump(BASE, made / f"{name}.dump", [
            (b"Fatal exception", fit(panic, 15)), (b"nullring_poll", fit(fn, 13)),
            (b"vendor_nullring", fit(mod, 15))])
        shutil.copyfile(out, os.path.join(host_dir, os.fsencode(f"{name}.dump")))
        dumps[name] = out
    names = os.path.join(os.fsencode(spool), b"host-names")
    os.mkdir(names)
    shutil.copyfile(BASE, os.path.join(names, b"real-\xff\x1b[2J.dump"))  # not UTF-8
    bad_host = os.path.join(os.fsencode(spool), b"host-\xfe")  # no host name: refused
    os.mkdir(bad_host)
    shutil.copyfile(BASE, os.path.join(bad_host, b"x.dump"))
    crowded = spool / "crowded"
    crowded.mkdir()
    for i in range(12_000):
        (crowded / f"junk-{i:05}.txt").write_bytes(b"")
    shutil.copyfile(OTHER, crowded / "real.dump")
    attacks = spool / "attacks"
    attacks.mkdir()
    secret = root / "shadow"
    secret.write_bytes(SECRET)
    os.link(secret, attacks / "hard.dump")
    (attacks / "link.dump").symlink_to(secret)
    os.mkfifo(attacks / "fifo.dump")
    if os.geteuid() == 0:
        (attacks / "foreign.dump").write_bytes(FOREIGN)
        os.chown(attacks / "foreign.dump", 65534, 65534)
    return spool, dumps, len(VARIANTS) + 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _crash_count(env: dict[str, str]) -> int:
    r = cli("clusters", "--json", "--limit", "1000", env=env)
    return sum(c["count"] for c in json.loads(r.stdout)) if r.returncode == 0 else 0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("hostile")
    spool, dumps, stored = _spool(root)
    data = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    env["CRASHFLEET_STORE_URL"] = f"sqlite:///{data / 'crashfleet.sqlite'}"
    port = _free_port()
    r = Run(spool, data, env, dumps, stored)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crashfleet.cli", "--log-format", "json", "run", "--spool",
         str(spool), "--data", str(data), "--metrics-port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        # The first line comes once the store is migrated: only then may another process
        # open it (two concurrent first migrations of one SQLite file race).
        first = proc.stdout.readline().decode()
        assert first.startswith("metrics:"), (first, proc.stderr.read()[-3000:])
        deadline = time.monotonic() + 300  # a bound for a hung run, not a speed target
        while _crash_count(env) < stored and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            r.metrics = resp.read().decode()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)  # SIGTERM: out within 10 s
        r.exit_code = proc.returncode
        r.stdout, r.stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        yield r
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_real_dump_is_stored_and_the_run_ends_on_sigterm(run: Run) -> None:
    assert run.exit_code == 0, run.stderr[-3000:]
    assert _crash_count(run.env) == run.stored
    logs = [json.loads(line) for line in run.stderr.splitlines()]
    refused = sorted((e["path"].rsplit("/", 2)[-2:][-1], e["reason"]) for e in logs
                     if e["event"] == "dump.refused")
    expected = [("fifo.dump", "not a regular file"), ("hard.dump", "hard link (2 links)"),
                ("host-\\xfe", "host directory name is not UTF-8"),
                ("link.dump", "symbolic link")]
    if os.geteuid() == 0:
        expected.append(("foreign.dump", "owned by uid 65534, not 0"))
    # The FIFO is skipped by the listing (not a regular file), so it may not be refused.
    assert [x for x in sorted(expected) if x[0] != "fifo.dump"] == [
        x for x in refused if x[0] != "fifo.dump"]
    assert not [e for e in logs if e["event"] == "event.dead_lettered"]


def test_every_log_line_is_json_and_quotes_nothing_outside_the_spool(run: Run) -> None:
    lines = run.stderr.splitlines()
    assert lines
    for line in lines:
        json.loads(line)  # each line, whole
    for text in (run.stderr, run.stdout, run.metrics):
        assert "SECRET-7f3a" not in text and "root:*:" not in text and "FOREIGN-7f3a" not in text


def test_nothing_outside_the_spool_is_shipped(run: Run) -> None:
    for path in run.data.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert b"SECRET-7f3a" not in blob and b"FOREIGN-7f3a" not in blob, path


def test_metrics_parse_with_prometheus_and_promtool(run: Run) -> None:
    families = {f.name: f for f in text_string_to_metric_families(run.metrics)}
    assert "crashfleet_agent_refused" in families
    labels = [s.labels.get("signature", "") for s in families["crashfleet_cluster_info"].samples]
    # Hostile text arrives as data in the labels (escaped by the exposition format).
    hostile = ("{{7*7}}", "\u2067", "\x00", '"', "\\", "\n", "<", "\x1b", "\ufffd")
    assert sum(any(h in s for h in hostile) for s in labels) >= 3, labels
    r = subprocess.run(["bash", str(REPO / "scripts" / "get-promtool.sh")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"promtool unavailable: {r.stderr}"
    check = subprocess.run([r.stdout.strip(), "check", "metrics"], input=run.metrics,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def _text_safe(out: bytes) -> None:
    text = out.decode("utf-8")  # text output is always valid UTF-8
    assert not RAW_CONTROL.search(text), RAW_CONTROL.search(text)


def test_text_outputs_hold_no_raw_control_characters(run: Run) -> None:
    _text_safe(run.stdout.encode())  # the tables `crashfleet run` printed as crashes came
    r = cli("clusters", env=run.env)
    assert r.returncode == 0
    _text_safe(r.stdout)
    assert b"\\u202epoll\\u200fab" in r.stdout  # the bidi variant's function, shown escaped
    for name, dump in run.dumps.items():
        a = cli("analyze", str(dump), env=run.env)
        assert a.returncode == 0, (name, a.stderr)
        _text_safe(a.stdout)
        _text_safe(a.stderr)


def _ints(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _ints(v)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v)


def _json_outputs(run: Run) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    clusters = json.loads(cli("clusters", "--json", env=run.env).stdout)
    out.append(("clusters", clusters))
    for c in clusters:
        out.append((f"crashes {c['id']}",
                    json.loads(cli("crashes", "--cluster", c["id"], "--json",
                                   env=run.env).stdout)))
    for name, dump in run.dumps.items():
        out.append((f"analyze {name}", json.loads(cli("analyze", str(dump), "--json",
                                                      env=run.env).stdout)))
    return out


def test_json_outputs_are_valid_and_exact(run: Run) -> None:
    outputs = dict(_json_outputs(run))
    hosts = {c["host"] for k, v in outputs.items() if k.startswith("crashes") for c in v}
    assert 'h"\\\n}{x="y' in hosts and "host\u202eevil" in hosts  # exact, not escaped
    for name, value in outputs.items():  # no NUL: PostgreSQL text could not store it
        assert "\\u0000" not in json.dumps(value), name
    panics = [v["panic"] for k, v in outputs.items() if k.startswith("analyze")
              if isinstance(v, dict) and "panic" in v]
    assert panics == [] or any("<script>" in str(p) for p in panics)


def test_json_outputs_hold_no_integer_above_2_53(run: Run) -> None:
    for name, value in _json_outputs(run):
        big = [i for i in _ints(value) if abs(i) > 2**53]
        assert not big, (name, big[:3])
