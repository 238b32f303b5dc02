"""Kernel identity from VMCOREINFO text: build-id, garbage build-ids, release, KASLR offset."""

from __future__ import annotations

import pytest

from symbol_cache import KernelIdentity, MalformedInput, is_plausible_build_id
from symbol_cache.identity import normalize_build_id, release_from_banner

REAL = "3b43fad5034874490492495d552c0af6a5fab235"


@pytest.mark.parametrize(
    ("value", "plausible"),
    [
        (REAL, True),
        (REAL.upper(), True),
        ("0" * 40, False),  # what the broken stable kernels print
        ("00" * 19 + "01", False),
        ("ff" * 20, False),
        ("", False),
        ("xyz", False),
        (REAL[:-1], False),  # odd number of digits
        ("1234", False),  # too short for any linker's build-id
        ("deadbeefcafebabe", True),  # 8-byte ids exist (lld --build-id=fast)
    ],
)
def test_plausible_build_ids(value: str, plausible: bool) -> None:
    assert is_plausible_build_id(value) is plausible


def test_normalize_rejects_garbage_with_message() -> None:
    with pytest.raises(MalformedInput, match="hex"):
        normalize_build_id("not-hex")


_VMCOREINFO = """OSRELEASE=6.1.0-56-cloud-amd64
BUILD-ID={bid}
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffff82a13a40
KERNELOFFSET=a200000
NUMBER(phys_base)=-2097152
"""


def test_identity_from_vmcoreinfo() -> None:
    ident = KernelIdentity.from_vmcoreinfo(_VMCOREINFO.format(bid=REAL))
    assert ident == KernelIdentity(REAL, "6.1.0-56-cloud-amd64", 0xA200000, False)
    assert ident.key == REAL


def test_garbage_build_id_falls_back_to_release() -> None:
    ident = KernelIdentity.from_vmcoreinfo(_VMCOREINFO.format(bid="0" * 40))
    assert ident.build_id is None and ident.build_id_garbage
    assert ident.key == "release:6.1.0-56-cloud-amd64"


def test_no_identity_at_all() -> None:
    ident = KernelIdentity.from_vmcoreinfo("PAGESIZE=4096\n")
    with pytest.raises(MalformedInput):
        _ = ident.key


def test_bad_kerneloffset() -> None:
    with pytest.raises(MalformedInput, match="KERNELOFFSET"):
        KernelIdentity.from_vmcoreinfo("KERNELOFFSET=zz\n")


@pytest.mark.parametrize(
    ("banner", "release"),
    [
        ("Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP",
         "6.1.0-56-cloud-amd64"),
        ("Linux version 6.12.118+deb13-cloud-amd64 (x) #1", "6.12.118+deb13-cloud-amd64"),
        ("not a banner", None),
    ],
)
def test_release_from_banner(banner: str, release: str | None) -> None:
    assert release_from_banner(banner) == release
