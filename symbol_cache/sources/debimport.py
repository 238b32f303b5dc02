"""Import the vmlinux from a Debian/Ubuntu debug package (``.deb``/``.ddeb``), nothing else.

The package is an ``ar`` archive; its ``data.tar.*`` member is streamed through Python's
``tarfile`` (xz, gzip, bzip2 or none), falling back to ``dpkg-deb --fsys-tarfile`` for
compressions the standard library lacks (zstd). Streaming stops at the vmlinux, which Debian
places near the start, so the several GB of module debug files are never decompressed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from symbol_cache.errors import MalformedInput, SourceUnavailable
from symbol_cache.sources.base import Wanted

__all__ = ["DebSource", "extract_vmlinux"]

_AR_MAGIC = b"!<arch>\n"
_AR_HDR = 60
_MAX_AR_MEMBERS = 16
_MAX_VMLINUX = 4 << 30
_MAX_TAR_MEMBERS = 200_000
_COPY = 1 << 20
_VMLINUX = re.compile(
    r"^\.?/?usr/lib/debug/(?:boot/vmlinux-(?P<rel1>[^/]+)|lib/modules/(?P<rel2>[^/]+)/vmlinux)$")
_DBG_DEB = re.compile(r"^linux-image-(?:unsigned-)?(?P<rel>.+?)-dbg(?:sym)?_")


class _Window:
    """A read-only file view of ``length`` bytes from ``start`` (an ar member)."""

    def __init__(self, fh: IO[bytes], start: int, length: int):
        self.fh, self.left = fh, length
        fh.seek(start)

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.fh.read(n)
        self.left -= len(data)
        return data


def _ar_members(fh: IO[bytes], path: Path) -> Iterator[tuple[str, int, int]]:
    if fh.read(8) != _AR_MAGIC:
        raise MalformedInput(f"{path}: not a Debian package (no ar magic)", path=str(path))
    pos = 8
    for _ in range(_MAX_AR_MEMBERS):
        fh.seek(pos)
        hdr = fh.read(_AR_HDR)
        if len(hdr) < _AR_HDR:
            return
        if hdr[58:60] != b"`\n":
            raise MalformedInput(f"{path}: bad ar member header", path=str(path), offset=pos)
        name = hdr[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(hdr[48:58].decode("ascii").strip())
        except ValueError:
            raise MalformedInput(f"{path}: bad ar member size", path=str(path),
                                 offset=pos) from None
        yield name, pos + _AR_HDR, size
        pos += _AR_HDR + size + (size & 1)


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if member.size > _MAX_VMLINUX:
        raise MalformedInput(f"vmlinux member of {member.size} bytes is too large")
    src = tar.extractfile(member)
    if src is None:
        raise MalformedInput(f"{member.name}: not a regular file")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with tmp.open("wb") as out:
            shutil.copyfileobj(src, out, _COPY)
        if tmp.stat().st_size != member.size:
            raise MalformedInput(f"{member.name}: truncated in the package")
        os.replace(tmp, dest)  # complete or absent, never partial
    finally:
        tmp.unlink(missing_ok=True)


def _scan(stream: IO[bytes], dest: Path, release: str | None) -> str | None:
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for count, member in enumerate(tar):
            if count > _MAX_TAR_MEMBERS:
                break
            m = _VMLINUX.match(member.name)
            if m and member.isfile():
                rel = m.group("rel1") or m.group("rel2")
                if release is None or rel == release:
                    _copy_member(tar, member, dest)
                    return rel
    return None


def extract_vmlinux(deb: Path, dest: Path, *, release: str | None = None) -> str | None:
    """Write the package's vmlinux to ``dest`` (atomically); returns its release, or None when
    the package has no vmlinux (for ``release`` when given)."""
    try:
        with deb.open("rb") as fh:
            members = list(_ar_members(fh, deb))
            data = [(n, s, z) for n, s, z in members if n.startswith("data.tar")]
            if not data:
                raise MalformedInput(f"{deb}: no data.tar member", path=str(deb))
            name, start, size = data[0]
            if not name.endswith(".zst"):
                try:
                    return _scan(_Window(fh, start, size), dest, release)  # type: ignore[arg-type]
                except tarfile.TarError as exc:
                    raise MalformedInput(f"{deb}: {name}: {exc}", path=str(deb)) from None
    except OSError as exc:
        raise SourceUnavailable("deb", f"{deb}: {exc.strerror or exc}") from None
    return _scan_dpkg(deb, dest, release)


def _scan_dpkg(deb: Path, dest: Path, release: str | None) -> str | None:
    if shutil.which("dpkg-deb") is None:
        raise MalformedInput(f"{deb}: zstd data needs dpkg-deb, which is not installed",
                             path=str(deb))
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        return _scan(proc.stdout, dest, release)
    except tarfile.TarError as exc:
        raise MalformedInput(f"{deb}: {exc}", path=str(deb)) from None
    finally:
        with contextlib.suppress(OSError):
            proc.stdout.close()
        proc.kill()
        proc.wait()


def release_of_package(deb: Path) -> str | None:
    """The kernel release in a debug package's file name (``linux-image-<rel>-dbg_…``)."""
    m = _DBG_DEB.match(deb.name)
    return m.group("rel") if m else None


class DebSource:
    """Debug packages, as files or directories of ``*.deb``/``*.ddeb`` files.

    A build-id is found by extracting candidate packages (those named after the wanted release
    first) and comparing build-ids in the cache; ``max_packages`` bounds that work.
    """

    name = "deb"

    def __init__(self, paths: Sequence[Path], *, max_packages: int = 8):
        self.paths = [Path(p) for p in paths]
        self.max_packages = max_packages

    def packages(self) -> list[Path]:
        out: list[Path] = []
        for p in self.paths:
            if p.is_dir():
                out += sorted(x for x in p.iterdir() if x.suffix in (".deb", ".ddeb")
                              and release_of_package(x))
            elif p.is_file():
                out.append(p)
        return out

    def fetch(self, wanted: Wanted, workdir: Path) -> Path | None:
        pkgs = self.packages()
        if wanted.release:
            pkgs = [p for p in pkgs if release_of_package(p) in (wanted.release, None)]
        from symbol_cache._elf import read_build_id

        for n, deb in enumerate(pkgs[: self.max_packages]):
            dest = workdir / f"vmlinux.deb{n}"
            if extract_vmlinux(deb, dest, release=wanted.release) is None:
                continue
            if wanted.build_id is None or read_build_id(dest) == wanted.build_id:
                return dest
            dest.unlink()
        return None
