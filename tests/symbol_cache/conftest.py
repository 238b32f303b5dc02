"""Session fixtures: the real Debian 6.1 cloud kernel (-dbg package and its vmlinux), ``nm``'s
view of it as the independent oracle, and our pack built once.

The kernel comes from the fixture factory's fetch script (private apt state, downloads cached in
``$CRASHFLEET_CACHE``, default ``~/.cache/crashfleet``), so a clean clone fetches it itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from symbol_cache import SymbolPack, build_pack, encode_pack

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
RELEASE = "6.1.0-56-cloud-amd64"
SUITE = "bookworm"


@dataclass(frozen=True)
class Kernel:
    release: str
    vmlinux: Path
    deb: Path
    build_id: str  # from readelf -n, not from our code


@dataclass(frozen=True)
class NmSymbol:
    address: int
    kind: str
    name: str


def _readelf_build_id(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m, "readelf found no build-id"
    return m.group(1)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """``crashfleet.cli.main`` (here and in other packages' tests) points structlog at the
    captured stderr of its test; reset so no test logs into a closed capture file."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def kernel61() -> Kernel:
    kdir = CACHE / "kernels" / RELEASE
    if not (kdir / ".done").exists():
        subprocess.run(["bash", str(REPO / "tests/fixtures/factory/fetch-kernels.sh"), RELEASE],
                       check=True, timeout=3600)
    debs = sorted((CACHE / "debs" / SUITE).glob(f"linux-image-{RELEASE}-dbg_*.deb"))
    assert debs, "fetch-kernels.sh left no -dbg package in the cache"
    vmlinux = (kdir / "vmlinux").resolve()
    return Kernel(RELEASE, vmlinux, debs[-1], _readelf_build_id(vmlinux))


@pytest.fixture(scope="session")
def nm_symbols(kernel61: Kernel) -> list[NmSymbol]:
    """``nm -n`` of the vmlinux: every symbol with an address, sorted."""
    out = subprocess.run(["nm", "-n", "--defined-only", str(kernel61.vmlinux)],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms.append(NmSymbol(int(parts[0], 16), parts[1], parts[2]))
    return syms


@pytest.fixture(scope="session")
def pack61(kernel61: Kernel) -> SymbolPack:
    pack = build_pack(kernel61.vmlinux, expect_build_id=kernel61.build_id, source="test")
    return dataclasses.replace(pack, size=len(encode_pack(pack)))


@pytest.fixture(scope="session")
def pack61_bytes(pack61: SymbolPack) -> bytes:
    return encode_pack(pack61)
