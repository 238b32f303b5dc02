"""Kernel identity: build-id and release, from VMCOREINFO text or a vmlinux banner.

Pure functions over text; no file or network access.

Some stable kernels (5.15.168+, 6.1.113 to 6.1.118, 6.6.55 to 6.6.62, among others) publish a
garbage ``BUILD-ID`` in VMCOREINFO: the backported build-id parser hardening made the vmcoreinfo
initialisation read no note, so the 20 bytes printed are zeros or leftovers. Such a value is
detected here and the caller falls back to a release-based lookup verified against the banner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from symbol_cache.errors import MalformedInput

__all__ = [
    "KernelIdentity",
    "is_plausible_build_id",
    "normalize_build_id",
    "parse_vmcoreinfo",
    "release_from_banner",
]

# VMCOREINFO prints BUILD_ID_SIZE_MAX (20) bytes; GNU build-ids (SHA-1) are 20 bytes too, but
# other linkers' ids (md5, uuid, xxhash) are 8 to 32 bytes, so both bounds are accepted here.
_MIN_ID_BYTES = 8
_MAX_ID_BYTES = 64
_HEX = re.compile(r"[0-9a-f]+")
# VMCOREINFO is a few KiB; anything much larger is not VMCOREINFO.
_MAX_VMCOREINFO = 1 << 20
_BANNER = re.compile(r"Linux version (\S+) ")


def normalize_build_id(text: str) -> str:
    """Lower-case hex of a build-id; raises :class:`MalformedInput` when it is not hex bytes."""
    value = text.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    if not _HEX.fullmatch(value) or len(value) % 2:
        raise MalformedInput(f"build-id {text!r} is not an even number of hex digits")
    if not _MIN_ID_BYTES * 2 <= len(value) <= _MAX_ID_BYTES * 2:
        raise MalformedInput(f"build-id {text!r} has {len(value) // 2} bytes, expected 8 to 64")
    return value


def is_plausible_build_id(text: str) -> bool:
    """False for values that cannot be a real build-id (the garbage-BUILD-ID kernels).

    A hash has high entropy: all-zero ids and ids with at most two distinct byte values are what
    the broken kernels print, never what a linker computes.
    """
    try:
        value = normalize_build_id(text)
    except MalformedInput:
        return False
    distinct = {value[i : i + 2] for i in range(0, len(value), 2)}
    return len(distinct) > 2


def release_from_banner(banner: str) -> str | None:
    """The release in a ``Linux version <release> (...)`` banner, or None."""
    m = _BANNER.search(banner)
    return m.group(1) if m else None


def parse_vmcoreinfo(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a VMCOREINFO note as a dict (later duplicates win)."""
    if len(text) > _MAX_VMCOREINFO:
        raise MalformedInput(f"VMCOREINFO of {len(text)} bytes exceeds {_MAX_VMCOREINFO}")
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class KernelIdentity:
    """Which kernel build a dump came from.

    ``build_id`` is lower-case hex, or None when unknown or garbage (``build_id_garbage`` then
    tells which). ``kernel_offset`` is the KASLR slide in bytes (runtime minus link address).
    """

    build_id: str | None
    release: str | None
    kernel_offset: int = 0
    build_id_garbage: bool = False

    @property
    def key(self) -> str:
        """The cache lookup key: the build-id when trustworthy, else ``release:<release>``."""
        if self.build_id:
            return self.build_id
        if self.release:
            return f"release:{self.release}"
        raise MalformedInput("kernel identity has neither a usable build-id nor a release")

    @classmethod
    def from_vmcoreinfo(cls, text: str) -> KernelIdentity:
        """Identity from VMCOREINFO (``BUILD-ID``, ``OSRELEASE``, ``KERNELOFFSET``)."""
        info = parse_vmcoreinfo(text)
        raw_id = info.get("BUILD-ID")
        build_id: str | None = None
        garbage = False
        if raw_id is not None:
            if is_plausible_build_id(raw_id):
                build_id = normalize_build_id(raw_id)
            else:
                garbage = True
        offset = 0
        if "KERNELOFFSET" in info:
            try:
                offset = int(info["KERNELOFFSET"], 16)
            except ValueError:
                raise MalformedInput(
                    f"VMCOREINFO KERNELOFFSET {info['KERNELOFFSET']!r} is not hex"
                ) from None
        return cls(build_id=build_id, release=info.get("OSRELEASE") or None,
                   kernel_offset=offset, build_id_garbage=garbage)
