"""The shared tier and the build lease on the embedded object store (``LocalObjectStore``, the
same contract as S3; the 8-process test in test_symbols_debuginfod.py uses real S3)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ingest import LocalObjectStore
from symbol_cache import NotFound, decode_pack
from symbol_cache.cache import SymbolCache
from symbol_cache.lease import BuildLease
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.sources import LocalDirSource
from symbol_cache.tiers import DiskTier, SharedTier


def _count(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


@pytest.fixture
def tree(tmp_path: Path, kernel61: Any) -> Path:
    root = tmp_path / "debug"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinux-{kernel61.release}").symlink_to(kernel61.vmlinux)
    return root


def _cache(tmp: Path, name: str, store: LocalObjectStore, sources: list[Any],
           **kw: Any) -> tuple[SymbolCache, CollectorRegistry]:
    reg = CollectorRegistry()
    cache = SymbolCache(sources=sources, disk=DiskTier(tmp / name, 1 << 30),
                        shared=SharedTier(store), metrics=SymbolMetrics(reg),
                        workdir=tmp / f"{name}-work", poll_s=0.05, **kw)
    return cache, reg


def test_second_machine_reads_shared(tmp_path: Path, tree: Path, kernel61: Any) -> None:
    store = LocalObjectStore(tmp_path / "store")
    a, _ = _cache(tmp_path, "a", store, [LocalDirSource([tree])])
    a.get(kernel61.build_id)
    b, reg_b = _cache(tmp_path, "b", store, [])  # no sources at all
    assert b.get(kernel61.build_id).build_id == kernel61.build_id
    assert _count(reg_b, "crashfleet_symbols_lookups_total", tier="shared", result="hit") == 1
    assert store.head(f"leases/{kernel61.build_id}") is None  # released


def test_corrupt_shared_pack_is_rebuilt_and_replaced(tmp_path: Path, tree: Path,
                                                     kernel61: Any, pack61_bytes: bytes) -> None:
    store = LocalObjectStore(tmp_path / "store")
    bad = bytearray(pack61_bytes)
    bad[-100] ^= 1
    store.put(f"packs/{kernel61.build_id}", bytes(bad))
    cache, reg = _cache(tmp_path, "a", store, [LocalDirSource([tree])])
    cache.get(kernel61.build_id)
    assert _count(reg, "crashfleet_symbols_lookups_total", tier="shared", result="corrupt") >= 1
    assert _count(reg, "crashfleet_symbols_builds_total", result="ok") == 1
    info = store.head(f"packs/{kernel61.build_id}")
    assert info is not None
    fixed = store.get_range(f"packs/{kernel61.build_id}", 0, info.size)
    assert decode_pack(fixed, expect_build_id=kernel61.build_id).build_id == kernel61.build_id


def test_waiter_takes_the_pack_another_process_builds(tmp_path: Path, kernel61: Any,
                                                      pack61_bytes: bytes) -> None:
    store = LocalObjectStore(tmp_path / "store")
    other = BuildLease(store, kernel61.build_id, ttl_s=60)
    assert other.try_acquire()  # "another analyzer" is building
    cache, reg = _cache(tmp_path, "a", store, [])
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(cache.get(kernel61.build_id)))
    t.start()
    time.sleep(0.5)
    assert t.is_alive()  # waiting, not building, not failing
    store.put(f"packs/{kernel61.build_id}", pack61_bytes)
    other.release()
    t.join(timeout=30)
    assert result and result[0].build_id == kernel61.build_id
    assert _count(reg, "crashfleet_symbols_builds_total", result="ok") == 0


def test_stale_lease_is_taken_over(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    now = [1000.0]
    dead = BuildLease(store, "ab" * 20, ttl_s=10, clock=lambda: now[0])
    assert dead.try_acquire()  # then its process dies without releasing
    alive = BuildLease(store, "ab" * 20, ttl_s=10, clock=lambda: now[0])
    assert not alive.try_acquire()
    now[0] += 11
    assert alive.try_acquire()


def test_missing_build_id_recorded_and_others_fail_fast(tmp_path: Path, tree: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    a, _reg_a = _cache(tmp_path, "a", store, [LocalDirSource([tree])])
    with pytest.raises(NotFound):
        a.get("cd" * 20)
    b, reg_b = _cache(tmp_path, "b", store, [LocalDirSource([tree])])
    with pytest.raises(NotFound, match="recorded failure"):
        b.get("cd" * 20)
    assert _count(reg_b, "crashfleet_symbols_fetches_total", source="dir", result="missing") == 0
    c, _ = _cache(tmp_path, "c", store, [LocalDirSource([tree])], failure_ttl_s=0)
    with pytest.raises(NotFound):  # expired (ttl 0 when written by c): c asks sources again
        c.get("ef" * 20)
    with pytest.raises(NotFound, match="no source has it"):
        c.get("ef" * 20)


def test_lease_kept_alive_while_building(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    lease = BuildLease(store, "ab" * 20, ttl_s=0.3)
    assert lease.try_acquire()
    other = BuildLease(store, "ab" * 20, ttl_s=0.3)
    with lease.kept_alive():
        time.sleep(1.0)  # three lease lifetimes
        assert not other.try_acquire()
    lease.release()
    assert other.try_acquire()


def test_shared_store_down_builds_locally(tmp_path: Path, tree: Path, kernel61: Any) -> None:
    import socket

    from ingest.s3 import S3ObjectStore

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = S3ObjectStore("packs-down", endpoint_url=f"http://127.0.0.1:{port}",
                          addressing_style="path", connect_timeout_s=0.5, read_timeout_s=0.5,
                          max_attempts=1)
    reg = CollectorRegistry()
    cache = SymbolCache(sources=[LocalDirSource([tree])],
                        disk=DiskTier(tmp_path / "disk", 1 << 30), shared=SharedTier(store),
                        metrics=SymbolMetrics(reg), workdir=tmp_path / "work")
    assert cache.get(kernel61.build_id).build_id == kernel61.build_id
    assert _count(reg, "crashfleet_symbols_builds_total", result="ok") == 1
    assert (tmp_path / "disk" / f"{kernel61.build_id}.pack").exists()
