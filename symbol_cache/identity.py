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
from vmcore.symbols import BadBuildId, is_plausible_build_id
from vmcore.symbols import normalize_build_id as _normalize

__all__ = [
    "KernelIdentity",
    "is_plausible_build_id",
    "normalize_build_id",
    "parse_vmcoreinfo",
    "release_from_banner",
]

# VMCOREINFO is a few KiB; anything much larger is not VMCOREINFO.
_MAX_VMCOREINFO = 1 << 20
_BANNER = re.compile(r"Linux version (\S+) ")


def normalize_build_id(text: str) -> str:
    """Lower-case hex of a build-id; raises :class:`MalformedInput` when it is not hex bytes."""
    try:
        return _normalize(text)
    except BadBuildId as e:
        raise MalformedInput(str(e)) from None


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
