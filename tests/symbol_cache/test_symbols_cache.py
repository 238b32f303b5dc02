"""The cache over real files: local-directory and .deb sources with the real 6.1 kernel, the
disk tier's cap, corrupt packs, build-id refusal, resumable downloads that are never visible
half-done."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from symbol_cache import BuildIdMismatch, NotFound, SourceUnavailable, decode_pack
from symbol_cache.cache import SymbolCache
from symbol_cache.identity import KernelIdentity
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.sources import DebSource, DebuginfodSource, LocalDirSource, Wanted
from symbol_cache.sources.debimport import extract_vmlinux
from symbol_cache.tiers import DiskTier


def _sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


def _cache(tmp: Path, sources: list[Any], cap: int = 1 << 30) -> tuple[SymbolCache,
                                                                      CollectorRegistry]:
    reg = CollectorRegistry()
    cache = SymbolCache(sources=sources, disk=DiskTier(tmp / "disk", cap),
                        metrics=SymbolMetrics(reg), workdir=tmp / "work")
    return cache, reg


@pytest.fixture
def debian_tree(tmp_path: Path, kernel61: Any) -> Path:
    """A Debian-layout /usr/lib/debug with the real vmlinux (symlinked, not copied)."""
    root = tmp_path / "usr-lib-debug"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinux-{kernel61.release}").symlink_to(kernel61.vmlinux)
    return root


def test_local_dir_by_build_id_then_disk_hit(tmp_path: Path, debian_tree: Path,
                                            kernel61: Any) -> None:
    cache, reg = _cache(tmp_path, [LocalDirSource([debian_tree])])
    pack = cache.get(kernel61.build_id)
    assert pack.build_id == kernel61.build_id
    assert _sample(reg, "crashfleet_symbols_builds_total", result="ok") == 1
    # A second process (fresh memory tier) reads the disk tier, no build.
    cache2, reg2 = _cache(tmp_path, [LocalDirSource([debian_tree])])
    assert cache2.get(kernel61.build_id).symbols.addrs == pack.symbols.addrs
    assert _sample(reg2, "crashfleet_symbols_lookups_total", tier="disk", result="hit") == 1
    assert _sample(reg2, "crashfleet_symbols_builds_total", result="ok") == 0
    # Same process again: memory.
    cache2.get(kernel61.build_id)
    assert _sample(reg2, "crashfleet_symbols_lookups_total", tier="memory", result="hit") == 1


def test_build_id_tree_layout(tmp_path: Path, kernel61: Any) -> None:
    bid = kernel61.build_id
    root = tmp_path / "debug"
    (root / ".build-id" / bid[:2]).mkdir(parents=True)
    (root / ".build-id" / bid[:2] / f"{bid[2:]}.debug").symlink_to(kernel61.vmlinux)
    assert LocalDirSource([root]).fetch(Wanted(bid), tmp_path) is not None


def test_garbage_build_id_uses_release_and_banner(tmp_path: Path, debian_tree: Path,
                                                  pack61: Any, kernel61: Any) -> None:
    cache, _reg = _cache(tmp_path, [LocalDirSource([debian_tree])])
    ident = KernelIdentity(build_id=None, release=kernel61.release, build_id_garbage=True)
    pack = cache.get_for(ident, banner=pack61.meta.banner)
    assert pack.build_id == kernel61.build_id
    # Remembered: the next lookup by release needs no source.
    cache2, reg2 = _cache(tmp_path, [])
    assert cache2.get_by_release(kernel61.release).build_id == kernel61.build_id
    assert _sample(reg2, "crashfleet_symbols_builds_total", result="ok") == 0


def test_release_with_other_banner_is_refused(tmp_path: Path, debian_tree: Path,
                                              kernel61: Any) -> None:
    cache, _reg = _cache(tmp_path, [LocalDirSource([debian_tree])])
    from symbol_cache import ReleaseMismatch

    with pytest.raises(ReleaseMismatch):
        cache.get_by_release(kernel61.release, banner="Linux version 6.1.0-56-cloud-amd64 "
                             "(someone-else) #2 SMP")
    assert not list((tmp_path / "disk").glob("*.pack"))


class _WrongMirror:
    """A source returning a real kernel ELF of another build (a misconfigured mirror); the
    only fake here, because a real server that lies about build-ids is what is being tested."""

    name = "wrong"

    def __init__(self, path: Path):
        self.path = path

    def fetch(self, wanted: Wanted, workdir: Path) -> Path | None:
        return self.path


def test_build_id_mismatch_refused_and_never_used(tmp_path: Path, kernel61: Any) -> None:
    cache, reg = _cache(tmp_path, [_WrongMirror(kernel61.vmlinux)])
    other = "ab" * 20
    with pytest.raises(BuildIdMismatch) as err:
        cache.get(other)
    assert err.value.expected == other and err.value.actual == kernel61.build_id
    assert kernel61.build_id in str(err.value) and other in str(err.value)
    assert not list((tmp_path / "disk").glob("*.pack"))
    assert _sample(reg, "crashfleet_symbols_builds_total", result="refused") == 1
    with pytest.raises(BuildIdMismatch):
        cache.import_vmlinux(kernel61.vmlinux, expect_build_id=other)


def test_missing_everywhere_is_not_found(tmp_path: Path, debian_tree: Path) -> None:
    cache, _reg = _cache(tmp_path, [LocalDirSource([debian_tree])])
    with pytest.raises(NotFound):
        cache.get("cd" * 20)


def test_corrupt_disk_pack_is_detected_and_rebuilt(tmp_path: Path, debian_tree: Path,
                                                  kernel61: Any) -> None:
    cache, _reg = _cache(tmp_path, [LocalDirSource([debian_tree])])
    cache.get(kernel61.build_id)
    path = tmp_path / "disk" / f"{kernel61.build_id}.pack"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    cache2, reg2 = _cache(tmp_path, [LocalDirSource([debian_tree])])
    pack = cache2.get(kernel61.build_id)
    assert _sample(reg2, "crashfleet_symbols_lookups_total", tier="disk", result="corrupt") == 1
    assert _sample(reg2, "crashfleet_symbols_builds_total", result="ok") == 1
    assert decode_pack(path.read_bytes(), expect_build_id=kernel61.build_id).meta.build_id == \
        pack.build_id


def test_disk_tier_never_exceeds_cap(tmp_path: Path, pack61_bytes: bytes) -> None:
    cap = int(len(pack61_bytes) * 2.5)
    tier = DiskTier(tmp_path / "disk", cap)
    ids = [f"{i:02x}" * 20 for i in range(1, 7)]
    errors: list[str] = []

    def writer(chunk: list[str]) -> None:
        for bid in chunk:
            tier.put(bid, pack61_bytes)
            if tier.total_bytes() > cap:
                errors.append(f"{tier.total_bytes()} > {cap}")

    threads = [threading.Thread(target=writer, args=(ids[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert tier.total_bytes() <= cap and len(tier.entries()) == 2
    assert not tier.put("ff" * 20, b"x" * (cap + 1))  # bigger than the cap: not stored


def test_disk_tier_evicts_least_recently_used(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path / "disk", 300)
    a, b, c = "aa" * 20, "bb" * 20, "cc" * 20
    tier.put(a, b"1" * 100)
    tier.put(b, b"2" * 100)
    os.utime(tier.path(a), (1, 1))
    os.utime(tier.path(b), (2, 2))
    tier.get(a)  # a is now the most recently used
    tier.put(c, b"3" * 150)
    assert tier.get(b) is None and tier.get(a) is not None and tier.get(c) is not None


@pytest.fixture(scope="session")
def deb_vmlinux(kernel61: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vmlinux extracted by our .deb importer from the real -dbg package (once)."""
    dest = tmp_path_factory.mktemp("deb") / "vmlinux"
    assert extract_vmlinux(kernel61.deb, dest) == kernel61.release
    return dest


@pytest.mark.slow
def test_deb_import_extracts_identical_vmlinux(deb_vmlinux: Path, kernel61: Any) -> None:
    # dpkg-deb extracted the reference copy (fixture factory); ours must be byte-identical.
    assert deb_vmlinux.stat().st_size == kernel61.vmlinux.stat().st_size
    with deb_vmlinux.open("rb") as a, kernel61.vmlinux.open("rb") as b:
        while True:
            x, y = a.read(1 << 24), b.read(1 << 24)
            assert x == y
            if not x:
                break


@pytest.mark.slow
def test_deb_source_by_release(tmp_path: Path, kernel61: Any) -> None:
    cache, _reg = _cache(tmp_path, [DebSource([kernel61.deb.parent])])
    pack = cache.get_by_release(kernel61.release)
    assert pack.build_id == kernel61.build_id
    assert not list((tmp_path / "work").rglob("vmlinux*"))  # the extracted copy is gone


# -- resumable, never-visible-partial downloads --------------------------------------------------


class _FlakyServer(http.server.ThreadingHTTPServer):
    """Serves one file as ``/buildid/<id>/debuginfo``; the first response stops after
    ``cut`` bytes (a dropped connection); later ones honour ``Range``. A fault injector: real
    debuginfod cannot be made to drop a connection on cue."""

    def __init__(self, path: Path, build_id: str, cut: int):
        self.path, self.build_id, self.cut = path, build_id, cut
        self.requests: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _FlakyServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        if self.path != f"/buildid/{srv.build_id}/debuginfo":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        srv.requests.append(rng)
        size = srv.path.stat().st_size
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        limit = srv.cut if len(srv.requests) == 1 else size
        with srv.path.open("rb") as fh:
            fh.seek(start)
            pos = start
            while pos < min(limit, size):
                chunk = fh.read(min(1 << 20, limit - pos))
                self.wfile.write(chunk)
                pos += len(chunk)
        if len(srv.requests) == 1:
            self.close_connection = True
            self.connection.shutdown(2)


@pytest.fixture
def flaky(kernel61: Any) -> Iterator[_FlakyServer]:
    srv = _FlakyServer(kernel61.vmlinux, kernel61.build_id, cut=64 << 20)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_interrupted_download_invisible_then_resumed(tmp_path: Path, flaky: _FlakyServer,
                                                     kernel61: Any) -> None:
    url = f"http://127.0.0.1:{flaky.server_address[1]}"
    reg = CollectorRegistry()
    metrics = SymbolMetrics(reg)
    src = DebuginfodSource([url], tmp_path / "downloads", timeout_s=10,
                           on_bytes=metrics.fetched_bytes.labels("debuginfod").inc)
    cache = SymbolCache(sources=[src], disk=DiskTier(tmp_path / "disk", 1 << 30),
                        metrics=metrics, workdir=tmp_path / "work")
    with pytest.raises(SourceUnavailable):
        cache.get(kernel61.build_id)
    assert _sample(reg, "crashfleet_symbols_fetches_total", source="debuginfod",
                   result="error") == 1
    # Nothing usable is visible: no pack, no complete download, only the .part to resume.
    assert not list((tmp_path / "disk").glob("*.pack"))
    assert not list(tmp_path.rglob("*.debuginfo"))
    part = tmp_path / "downloads" / f"{kernel61.build_id}.part"
    assert 0 < part.stat().st_size <= 64 << 20
    pack = cache.get(kernel61.build_id)
    assert pack.build_id == kernel61.build_id
    assert flaky.requests == [None, f"bytes={flaky.cut}-"]
    assert not part.exists()
    total = _sample(reg, "crashfleet_symbols_fetched_bytes_total", source="debuginfod")
    assert total == kernel61.vmlinux.stat().st_size

