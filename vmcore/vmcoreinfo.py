"""VMCOREINFO: the kernel's ``KEY=value`` description of itself, saved in every dump.

Parsing rules (kernel ``kernel/vmcore_info.c``, ``arch/*/kernel/vmcore_info*.c``):
``SYMBOL(x)`` and ``KERNELOFFSET`` are hex without ``0x``; ``SIZE``, ``OFFSET``, ``LENGTH`` are
decimal; ``NUMBER(x)`` is decimal (possibly negative) but arm64 prints some as ``0x…`` so the
base is detected; ``CRASHTIME`` is decimal seconds; ``CONFIG_X=y``. Unknown keys are kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from vmcore.errors import CorruptDump

__all__ = ["VmcoreInfo", "parse_vmcoreinfo"]

# A VMCOREINFO note is at most a few pages; refuse anything absurdly large before parsing.
MAX_VMCOREINFO_BYTES = 1 << 20
_KEYED = re.compile(r"^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\((.+)\)$")
_BUILD_ID = re.compile(r"^[0-9a-f]{40}$")
_EMPTY: Mapping[str, int] = MappingProxyType({})
_EMPTY_S: Mapping[str, str] = MappingProxyType({})


class VmcoreInfo(NamedTuple):
    """Parsed VMCOREINFO. Addresses are virtual, already relocated (KASLR applied).

    ``symbols``: name -> address; ``sizes``: struct -> bytes; ``offsets``: ``struct.member``
    -> byte offset; ``lengths``: array -> element count; ``numbers``: name -> integer;
    ``configs``: ``CONFIG_X`` -> value; ``raw``: every other ``KEY`` -> string.
    """

    osrelease: str | None = None
    build_id: str | None = None
    page_size: int | None = None
    kernel_offset: int | None = None
    crash_time: int | None = None
    symbols: Mapping[str, int] = _EMPTY
    sizes: Mapping[str, int] = _EMPTY
    offsets: Mapping[str, int] = _EMPTY
    lengths: Mapping[str, int] = _EMPTY
    numbers: Mapping[str, int] = _EMPTY
    configs: Mapping[str, str] = _EMPTY_S
    raw: Mapping[str, str] = _EMPTY_S

    def symbol(self, name: str) -> int:
        """``SYMBOL(name)`` or :class:`CorruptDump` naming the missing key."""
        return _need(self.symbols, name, "SYMBOL")

    def size(self, name: str) -> int:
        """``SIZE(name)`` in bytes."""
        return _need(self.sizes, name, "SIZE")

    def offset(self, name: str) -> int:
        """``OFFSET(struct.member)`` in bytes."""
        return _need(self.offsets, name, "OFFSET")


def _need(table: Mapping[str, int], name: str, kind: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise CorruptDump(f"VMCOREINFO has no {kind}({name})") from None


def _number(text: str) -> int:
    t = text.strip()
    neg = t.startswith("-")
    body = t[1:] if neg else t
    value = int(body, 16) if body.lower().startswith("0x") else int(body, 10)
    return -value if neg else value


def parse_vmcoreinfo(data: bytes) -> VmcoreInfo:
    """Parse a VMCOREINFO blob (NUL padding allowed). Malformed lines are skipped, not fatal:
    a bad value for one key must not hide the rest of the dump."""
    if len(data) > MAX_VMCOREINFO_BYTES:
        raise CorruptDump(f"VMCOREINFO of {len(data)} bytes exceeds {MAX_VMCOREINFO_BYTES}")
    text = data.split(b"\0", 1)[0].decode("ascii", "replace")
    tables: dict[str, dict[str, int]] = {k: {} for k in ("SYMBOL", "SIZE", "OFFSET", "LENGTH",
                                                         "NUMBER")}
    configs: dict[str, str] = {}
    raw: dict[str, str] = {}
    scalars: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        m = _KEYED.match(key)
        try:
            if m:
                kind, name = m.groups()
                tables[kind][name] = int(value, 16) if kind == "SYMBOL" else _number(value)
            elif key.startswith("CONFIG_"):
                configs[key] = value
            elif key in ("OSRELEASE", "BUILD-ID", "PAGESIZE", "KERNELOFFSET", "CRASHTIME"):
                scalars[key] = value
            else:
                raw[key] = value
        except ValueError:
            raw[key] = value
    build_id = scalars.get("BUILD-ID")
    # Some stable kernels export garbage here (see docs/decoder.md); keep only a real id.
    if build_id is not None and not _BUILD_ID.match(build_id):
        raw["BUILD-ID"] = build_id
        build_id = None

    def opt_int(key: str, base: int) -> int | None:
        try:
            return int(scalars[key], base) if key in scalars else None
        except ValueError:
            return None

    return VmcoreInfo(
        osrelease=scalars.get("OSRELEASE"),
        build_id=build_id,
        page_size=opt_int("PAGESIZE", 10),
        kernel_offset=opt_int("KERNELOFFSET", 16),
        crash_time=opt_int("CRASHTIME", 10),
        symbols=tables["SYMBOL"],
        sizes=tables["SIZE"],
        offsets=tables["OFFSET"],
        lengths=tables["LENGTH"],
        numbers=tables["NUMBER"],
        configs=configs,
        raw=raw,
    )
