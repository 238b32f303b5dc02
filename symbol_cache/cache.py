"""The symbol cache: packs by build-id through memory, disk, shared store, then sources.

N processes asking for the same missing build-id cause one fetch and one build: with a shared
store, through a :class:`~symbol_cache.lease.BuildLease`; without one, through an ``flock`` on
the disk tier (one machine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog

from ingest.errors import RetryableIngestError
from symbol_cache._locks import exclusive_lock, expires_at
from symbol_cache.builder import DEFAULT_STRUCTS, build_pack
from symbol_cache.errors import (
    BuildIdMismatch,
    CorruptPack,
    LeaseTimeout,
    MalformedInput,
    NotFound,
    ReleaseMismatch,
    SourceUnavailable,
)
from symbol_cache.identity import KernelIdentity, normalize_build_id
from symbol_cache.lease import BuildLease
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.pack import SymbolPack, decode_pack, encode_pack
from symbol_cache.sources.base import Source, Wanted
from symbol_cache.tiers import DiskTier, MemoryTier, SharedTier

__all__ = ["SymbolCache"]

log = structlog.get_logger("symbol_cache")

# What `uname -r` can print: no path separators, no leading dot, bounded.
_RELEASE = re.compile(r"[A-Za-z0-9_+~-][A-Za-z0-9._+~-]{0,127}")


class SymbolCache:
    """Packs on demand. ``workdir`` holds downloads while a pack is built (removed after);
    ``wait_timeout_s`` bounds waiting for another process's build, polling every ``poll_s``
    (seconds); with a shared tier, a build-id no source has is remembered there for
    ``failure_ttl_s`` seconds."""

    def __init__(self, *, sources: Sequence[Source], disk: DiskTier,
                 shared: SharedTier | None = None, metrics: SymbolMetrics,
                 memory: MemoryTier | None = None, workdir: Path | None = None,
                 lease_ttl_s: float = 300.0, wait_timeout_s: float = 600.0,
                 failure_ttl_s: float = 300.0,
                 poll_s: float = 0.5, structs: tuple[str, ...] = DEFAULT_STRUCTS,
                 sleep: Callable[[float], None] = time.sleep):
        self.sources = list(sources)
        self.disk = disk
        self.shared = shared
        self.metrics = metrics
        self.memory = memory or MemoryTier()
        self.workdir = workdir or disk.root / "work"
        self.lease_ttl_s = lease_ttl_s
        self.wait_timeout_s = wait_timeout_s
        self.failure_ttl_s = failure_ttl_s
        self.poll_s = poll_s
        self.structs = structs
        self.sleep = sleep

    # -- tiers --------------------------------------------------------------------------------

    def _decode(self, tier: str, data: bytes, build_id: str) -> SymbolPack | None:
        try:
            pack = decode_pack(data, expect_build_id=build_id)
        except (CorruptPack, BuildIdMismatch) as exc:
            self.metrics.lookups.labels(tier, "corrupt").inc()
            log.warning("symbols.pack_corrupt", tier=tier, build_id=build_id, error=str(exc))
            return None
        self.metrics.lookups.labels(tier, "hit").inc()
        return pack

    def _from_disk(self, build_id: str) -> SymbolPack | None:
        data = self.disk.get(build_id)
        if data is None:
            self.metrics.lookups.labels("disk", "miss").inc()
            return None
        pack = self._decode("disk", data, build_id)
        if pack is None:
            self.disk.drop(build_id)
        return pack

    def _from_shared(self, build_id: str) -> tuple[SymbolPack | None, bool]:
        """(pack, corrupt copy seen) from the shared tier."""
        assert self.shared is not None
        data = self.shared.get(build_id)
        if data is None:
            self.metrics.lookups.labels("shared", "miss").inc()
            return None, False
        pack = self._decode("shared", data, build_id)
        if pack is not None:
            self._keep(pack, data, shared=False)
        return pack, pack is None

    def _keep(self, pack: SymbolPack, data: bytes, *, shared: bool,
              replace_shared: bool = False) -> None:
        if shared and self.shared is not None:
            try:
                self.shared.put(pack.build_id, data, replace=replace_shared)
            except RetryableIngestError as exc:  # the pack stays usable locally
                log.warning("symbols.shared_unavailable", build_id=pack.build_id,
                            error=str(exc))
        self.disk.put(pack.build_id, data)
        self.metrics.disk_bytes.set(self.disk.total_bytes())
        self.memory.put(pack)

    # -- public -------------------------------------------------------------------------------

    def get(self, build_id: str) -> SymbolPack:
        """The pack of ``build_id``, building it from a source if no tier has it."""
        build_id = normalize_build_id(build_id)
        pack = self.memory.get(build_id)
        if pack is not None:
            self.metrics.lookups.labels("memory", "hit").inc()
            return pack
        self.metrics.lookups.labels("memory", "miss").inc()
        pack = self._from_disk(build_id)
        if pack is not None:
            self.memory.put(pack)
            return pack
        if self.shared is not None:
            try:
                return self._get_shared(build_id)
            except RetryableIngestError as exc:
                # Shared store down: carry on alone (single flight only within this machine).
                log.warning("symbols.shared_unavailable", build_id=build_id, error=str(exc))
        with self._local_lock(build_id):
            pack = self._from_disk(build_id)  # built by another process meanwhile?
            if pack is not None:
                self.memory.put(pack)
                return pack
            return self._build(Wanted(build_id), publish=False)

    def get_by_release(self, release: str, *, banner: str | None = None) -> SymbolPack:
        """The pack of the kernel called ``release`` (for dumps whose build-id is garbage).

        A vmlinux found by release is accepted only when its own banner names ``release`` and,
        when the dump's ``banner`` is given, equals it; it is then cached under its build-id and
        ``<disk root>/releases/<release>`` remembers which one."""
        if not _RELEASE.fullmatch(release):
            raise MalformedInput(f"{release!r} is not a kernel release name")
        pack = self._aliased(release, banner)
        if pack is not None:
            return pack
        with self._local_lock("release-" + release):
            pack = self._aliased(release, banner)  # found by another process meanwhile?
            if pack is not None:
                return pack
            return self._build(Wanted(None, release), publish=self.shared is not None,
                               release_banner=banner)

    def _aliased(self, release: str, banner: str | None) -> SymbolPack | None:
        """The pack a previous lookup found for ``release``, if still obtainable and matching."""
        try:
            build_id = (self.disk.root / "releases" / release).read_text().strip()
            pack = self.get(build_id)
        except (FileNotFoundError, NotFound, MalformedInput):
            return None
        return pack if _banner_matches(pack, release, banner) else None

    def get_for(self, identity: KernelIdentity, *, banner: str | None = None) -> SymbolPack:
        """The pack for a dump: by build-id, else (garbage or unknown id) by release."""
        if identity.build_id:
            try:
                return self.get(identity.build_id)
            except NotFound:
                if not identity.release:
                    raise
        if not identity.release:
            raise NotFound("dump has neither a usable build-id nor a release")
        return self.get_by_release(identity.release, banner=banner)

    def _get_shared(self, build_id: str) -> SymbolPack:
        assert self.shared is not None
        pack, corrupt = self._from_shared(build_id)
        if pack is not None:
            return pack
        self._check_failure(build_id)
        lease = BuildLease(self.shared.store, build_id, ttl_s=self.lease_ttl_s)
        deadline = time.monotonic() + self.wait_timeout_s
        while time.monotonic() < deadline:
            if lease.try_acquire():
                try:
                    if not corrupt:
                        pack, corrupt = self._from_shared(build_id)
                        if pack is not None:
                            return pack
                    try:
                        with lease.kept_alive():
                            return self._build(Wanted(build_id), publish=True,
                                               replace_shared=corrupt)
                    except (NotFound, BuildIdMismatch) as exc:
                        self._record_failure(build_id, exc)
                        raise
                finally:
                    lease.release()
            self.sleep(self.poll_s)
            pack, corrupt = self._from_shared(build_id)
            if pack is not None:
                return pack
            self._check_failure(build_id)
            if corrupt:
                continue  # a corrupt shared copy: take the lease and rebuild it
        raise LeaseTimeout(f"no pack for {build_id} after waiting {self.wait_timeout_s:g}s "
                           "for another builder", build_id=build_id)

    def _failure_key(self, build_id: str) -> str:
        return f"failures/{build_id}"

    def _record_failure(self, build_id: str, exc: Exception) -> None:
        """Remember for ``failure_ttl_s`` that no source has ``build_id``, so the fleet's other
        analyzers fail fast instead of each asking every source again."""
        assert self.shared is not None
        meta = {"expires": f"{time.time() + self.failure_ttl_s:.3f}"}
        self.shared.store.put(self._failure_key(build_id), str(exc).encode()[:4096], meta)

    def _check_failure(self, build_id: str) -> None:
        assert self.shared is not None
        store = self.shared.store
        info = store.head(self._failure_key(build_id))
        if info is None:
            return
        if expires_at(info.metadata) <= time.time():
            return
        detail = store.get_range(self._failure_key(build_id), 0, 4096).decode("utf-8",
                                                                             "replace")
        raise NotFound(f"no debug info for {build_id} (recorded failure, retried after "
                       f"{self.failure_ttl_s:g}s): {detail}", build_id=build_id)

    @contextlib.contextmanager
    def _local_lock(self, build_id: str) -> Iterator[None]:
        with exclusive_lock(self.disk.root / f".{build_id}.building"):
            yield

    def import_vmlinux(self, vmlinux: Path, *, expect_build_id: str | None = None,
                       source: str = "import", publish: bool = True) -> SymbolPack:
        """Build the pack of a vmlinux at hand and store it in every tier. Raises
        :class:`BuildIdMismatch` when it is not ``expect_build_id``."""
        expect = normalize_build_id(expect_build_id) if expect_build_id else None
        started = time.perf_counter()
        try:
            pack = build_pack(vmlinux, expect_build_id=expect, source=source,
                              structs=self.structs)
        except (BuildIdMismatch, MalformedInput):
            self.metrics.builds.labels("refused").inc()
            raise
        data = encode_pack(pack)
        pack = dataclasses.replace(pack, size=len(data))
        self.metrics.builds.labels("ok").inc()
        self.metrics.build_seconds.observe(time.perf_counter() - started)
        log.info("symbols.pack_built", build_id=pack.build_id, source=source, bytes=len(data),
                 seconds=round(time.perf_counter() - started, 3))
        self._keep(pack, data, shared=publish)
        if pack.meta.release:
            self._remember_release(pack.meta.release, pack.build_id)
        return pack

    def _remember_release(self, release: str, build_id: str) -> None:
        if not _RELEASE.fullmatch(release):
            return  # not a name we can use as a file name
        alias = self.disk.root / "releases" / release
        alias.parent.mkdir(parents=True, exist_ok=True)
        tmp = alias.with_name(f".{alias.name}.{time.monotonic_ns()}.tmp")
        tmp.write_text(build_id + "\n")
        tmp.replace(alias)

    def _import_by_release(self, path: Path, release: str, banner: str | None, source: str,
                           publish: bool) -> SymbolPack:
        pack = build_pack(path, source=source, structs=self.structs)
        if not _banner_matches(pack, release, banner):
            self.metrics.builds.labels("refused").inc()
            raise ReleaseMismatch(banner or release, pack.meta.banner, path=str(path))
        return self.import_vmlinux(path, expect_build_id=pack.build_id, source=source,
                                   publish=publish)

    def _build(self, wanted: Wanted, *, publish: bool, replace_shared: bool = False,
               release_banner: str | None = None) -> SymbolPack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.workdir))
        problems: list[str] = []
        mismatch: BuildIdMismatch | ReleaseMismatch | None = None
        try:
            for src in self.sources:
                try:
                    path = src.fetch(wanted, work)
                except (SourceUnavailable, MalformedInput) as exc:
                    self.metrics.fetches.labels(src.name, "error").inc()
                    log.warning("symbols.source_failed", source=src.name,
                                build_id=wanted.build_id, error=str(exc))
                    problems.append(str(exc))
                    continue
                if path is None:
                    self.metrics.fetches.labels(src.name, "missing").inc()
                    continue
                self.metrics.fetches.labels(src.name, "ok").inc()
                try:
                    if wanted.build_id is None:
                        pack = self._import_by_release(path, wanted.release or "",
                                                       release_banner, src.name, publish)
                    else:
                        pack = self.import_vmlinux(path, expect_build_id=wanted.build_id,
                                                   source=src.name, publish=publish)
                except (BuildIdMismatch, ReleaseMismatch) as exc:
                    log.error("symbols.identity_mismatch", source=src.name, path=str(path),
                              expected=exc.expected, actual=exc.actual)
                    mismatch = exc
                    continue
                if replace_shared and self.shared is not None:
                    self.shared.put(pack.build_id, encode_pack(pack), replace=True)
                return pack
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if mismatch is not None:
            raise mismatch
        detail = "; ".join(problems) if problems else "no source has it"
        if problems:
            raise SourceUnavailable("sources", detail, build_id=wanted.build_id)
        raise NotFound(f"no debug info for {wanted}: {detail}", build_id=wanted.build_id)


def _banner_matches(pack: SymbolPack, release: str, banner: str | None) -> bool:
    if pack.meta.release != release:
        return False
    return banner is None or (pack.meta.banner or "").strip() == banner.strip()
