"""``crashfleet analyze DUMP`` picks the best symbol source with no flags, as whole processes:
a pack already cached (importing only the pack reader), else a configured source within
``symbols.fetch_timeout_s``, else the dump's own kallsyms/BTF/ORC; ``--no-symbols`` forces
the log only. The summary names the source."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from symbol_cache import encode_pack

from ..vmcore.conftest import CASES, Case
from ..vmcore.test_deep_real import _pack

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("structlog", "prometheus_client", "elftools", "httpx", "boto3",
         "symbol_cache.builder", "symbol_cache.cache", "symbol_cache.sources.debuginfod")
_PROBE = (
    "import sys\n"
    "from crashfleet.commands.analyze import main\n"
    "rc = main(sys.argv[1:])\n"
    f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
    "print('HEAVY', ' '.join(heavy), 'RC', rc)\n"
)


def _case(release_prefix: str) -> Case:
    # the committed dumps first: the same case on every machine, whatever its corpus holds
    for c in sorted(CASES, key=lambda c: not c.manifest.get("dump_in_repo")):
        if c.manifest["kernel_release"].startswith(release_prefix):
            return c
    pytest.skip(f"no {release_prefix} dump fixture")


def _run(dump: Path, *args: str, cache: Path, **env: str) -> str:
    e = {**os.environ, "CRASHFLEET_SYMBOLS_CACHE_DIR": str(cache),
         "CRASHFLEET_SYMBOLS_SOURCES": "", "DEBUGINFOD_URLS": "", **env}
    r = subprocess.run([sys.executable, "-c", _PROBE, str(dump), *args], env=e, cwd=REPO,
                       capture_output=True, text=True, timeout=300, check=False)
    assert "HEAVY" in r.stdout, r.stderr
    return r.stdout


def test_warm_pack_is_used_and_imports_only_the_reader(tmp_path: Path) -> None:
    case = _case("6.1")
    pack = _pack(case.manifest["kernel_release"])
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / f"{pack.build_id}.pack").write_bytes(encode_pack(pack))
    out = _run(case.dump, cache=tmp_path)
    assert f"symbols:                pack {pack.build_id}" in out
    assert "HEAVY  RC" in out, out.splitlines()[-1]


def test_no_pack_no_source_reads_the_dump_s_own_symbols(tmp_path: Path) -> None:
    out = _run(_case("6.1").dump, cache=tmp_path)
    assert "symbols:                from the dump (kallsyms, BTF, ORC)" in out
    assert "matched by dump" in out and "kthread+0xda/0x100" in out
    assert "HEAVY  RC" in out


def test_no_symbols_forces_the_log(tmp_path: Path) -> None:
    out = _run(_case("6.1").dump, "--no-symbols", cache=tmp_path)
    assert "symbols:       none (log only)" in out
    assert "(from the log)" in out and "stack (memory)" not in out


def test_5_10_without_kallsyms_keeps_the_log_findings(tmp_path: Path) -> None:
    case = _case("5.10")
    out = _run(case.dump, cache=tmp_path)
    assert "none (log only)" in out
    assert "symbols: none from the dump (kallsyms: VMCOREINFO has no SYMBOL(kallsyms_names)" \
        in out
    if case.manifest["scenario"] in ("uau", "null"):
        assert "(from the log)" in out


def test_a_source_that_never_answers_is_given_up_after_the_timeout(tmp_path: Path) -> None:
    """A real TCP server that accepts and never replies stands for a hung debuginfod."""
    srv = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        out = _run(_case("6.1").dump, cache=tmp_path,
                   CRASHFLEET_SYMBOLS_SOURCES="debuginfod",
                   DEBUGINFOD_URLS=f"http://127.0.0.1:{srv.getsockname()[1]}",
                   CRASHFLEET_SYMBOLS_FETCH_TIMEOUT_S="2")
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    assert "symbols: no pack (TimeoutError: no pack within symbols.fetch_timeout_s (2 s))" \
        in out
    assert "from the dump (kallsyms, BTF, ORC)" in out
