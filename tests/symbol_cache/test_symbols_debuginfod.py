"""A real elfutils debuginfod on loopback indexing the real Debian 6.1 -dbg package: the cache
fetches by build-id and builds a pack whose lookups agree with nm; then 8 processes sharing an
S3 tier ask for the same missing build-id at once and exactly one fetches and builds."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from symbol_cache.cache import SymbolCache
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.sources import DebuginfodSource
from symbol_cache.tiers import DiskTier

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("debuginfod") is None or shutil.which("bsdtar") is None,
                       reason="needs Debian packages debuginfod and libarchive-tools"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    """HTTP status of a GET (debuginfod answers HEAD with 400); the body is not read."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@pytest.fixture(scope="session")
def debuginfod_url(kernel61: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("debuginfod")
    debs = root / "debs"
    debs.mkdir()
    (debs / kernel61.deb.name).symlink_to(kernel61.deb)
    port = _free_port()
    log = (root / "debuginfod.log").open("wb")
    proc = subprocess.Popen(
        ["debuginfod", "-U", "-L", "-p", str(port), "-d", str(root / "db.sqlite"), "-t", "0",
         "-g", "0", "--disable-source-scan", "-c", "2", str(debs)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        probe = f"{url}/buildid/{kernel61.build_id}/debuginfo"
        while _status(probe) != 200:
            assert proc.poll() is None, (root / "debuginfod.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "debuginfod did not index the package in 300 s"
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.timeout(900)
def test_fetch_from_debuginfod_agrees_with_nm(tmp_path: Path, debuginfod_url: str,
                                              kernel61: Any, nm_symbols: list[Any]) -> None:
    reg = CollectorRegistry()
    metrics = SymbolMetrics(reg)
    src = DebuginfodSource([debuginfod_url], tmp_path / "dl", timeout_s=120,
                           on_bytes=metrics.fetched_bytes.labels("debuginfod").inc)
    cache = SymbolCache(sources=[src], disk=DiskTier(tmp_path / "disk", 1 << 30),
                        metrics=metrics, workdir=tmp_path / "work")
    pack = cache.get(kernel61.build_id)
    assert pack.build_id == kernel61.build_id and pack.meta.source == "debuginfod"
    assert reg.get_sample_value("crashfleet_symbols_fetched_bytes_total",
                                {"source": "debuginfod"}) == kernel61.vmlinux.stat().st_size
    # 1,000 random addresses inside symbols that nm lists alone at their address.
    by_addr: dict[int, list[str]] = {}
    for s in nm_symbols:
        if s.kind in "TtWw" and s.address >= 0xFFFFFFFF80000000:
            by_addr.setdefault(s.address, []).append(s.name)
    addrs = sorted(by_addr)
    rng = random.Random(5)
    picks = rng.sample([i for i in range(len(addrs) - 1) if len(by_addr[addrs[i]]) == 1], 1000)
    for i in picks:
        start = addrs[i]
        off = rng.randrange(addrs[i + 1] - start)
        hit = pack.symbols.lookup(start + off)
        assert hit is not None and (hit.name, hit.offset) == (by_addr[start][0], off)


@pytest.mark.services
@pytest.mark.timeout(900)
def test_eight_processes_one_fetch_one_build(tmp_path: Path, debuginfod_url: str,
                                             kernel61: Any, services: Any,
                                             s3_bucket: str) -> None:
    worker = Path(__file__).with_name("symbols_worker.py")
    start = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [
        subprocess.Popen([sys.executable, str(worker), str(start), str(tmp_path / f"w{i}"),
                          services.s3_endpoint, s3_bucket, debuginfod_url, kernel61.build_id],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(8)
    ]
    time.sleep(3)  # let all eight import and reach the start line
    start.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=800)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["fetches"] for r in results) == 1, results
    assert sum(r["builds"] for r in results) == 1, results
    assert sum(r["shared_hits"] for r in results) >= 7, results
    assert len({r["sha256"] for r in results}) == 1


def _readelf_build_id(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split("Build ID: ")[1].split()[0]


def _readelf_symbols(path: Path) -> list[tuple[str, int, int, str]]:
    """(section, value, size, name) of defined FUNC/OBJECT symbols, per binutils readelf."""
    secs = {}
    for line in subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.replace("[ ", "[").split()
        if parts and parts[0].startswith("[") and parts[0][1:-1].isdigit():
            secs[parts[0][1:-1]] = parts[1]
    out = []
    for line in subprocess.run(["readelf", "-sW", str(path)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 8 and parts[3] in ("FUNC", "OBJECT") and parts[6].isdigit():
            out.append((secs[parts[6]], int(parts[1], 16), int(parts[2]), parts[7]))
    return out


@pytest.mark.timeout(900)
def test_module_debug_file_by_build_id(tmp_path: Path, debuginfod_url: str,
                                       kernel61: Any) -> None:
    # The image package's (stripped) module carries the build-id of its debug file.
    shipped = (kernel61.vmlinux.parents[4] / "lib/modules" / kernel61.release /
               "kernel/drivers/firmware/qemu_fw_cfg.ko")
    build_id = _readelf_build_id(shipped)
    cache = SymbolCache(sources=[DebuginfodSource([debuginfod_url], tmp_path / "dl")],
                        disk=DiskTier(tmp_path / "disk", 1 << 30),
                        metrics=SymbolMetrics(CollectorRegistry()), workdir=tmp_path / "work")
    pack = cache.get(build_id)
    assert pack.meta.kind == "module" and pack.meta.module_name == "qemu_fw_cfg"
    # Oracle: readelf on the debug .ko as debuginfod serves it (downloaded independently).
    ko = tmp_path / "qemu_fw_cfg.ko"
    with urllib.request.urlopen(f"{debuginfod_url}/buildid/{build_id}/debuginfo",
                                timeout=120) as resp:
        ko.write_bytes(resp.read())
    from symbol_cache.modules import module_lookup

    bases = {name: 0xFFFFFFFFC0000000 + i * 0x100000
             for i, (name, _size) in enumerate(pack.meta.module_sections)}
    syms = [s for s in _readelf_symbols(ko) if s[0] in bases and s[2] > 0]
    assert len(syms) >= 20
    for section, value, size, name in syms:
        for off in (0, size - 1):
            hit = module_lookup(pack, bases[section] + value + off, bases)
            assert hit is not None and hit.offset == off and hit.address == bases[section] + \
                value, (section, name, off, hit)
            # Aliases at one address: our name must be one readelf lists there.
            assert hit.name in {n for s, v, _z, n in syms if s == section and v == value}
