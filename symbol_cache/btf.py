"""Struct layouts from a vmlinux's BTF: the parser is :mod:`vmcore.btf` (one parser for BTF
from a vmlinux and from a dump's memory); here its errors become the symbol cache's."""

from __future__ import annotations

from collections.abc import Iterable

from symbol_cache.errors import MalformedInput
from vmcore import btf as _btf
from vmcore.btf import Member, StructLayout
from vmcore.errors import BadBtf

__all__ = ["Member", "StructLayout", "parse_btf_structs"]


def parse_btf_structs(data: bytes, names: Iterable[str]) -> dict[str, StructLayout]:
    """:func:`vmcore.btf.parse_btf_structs`, raising :class:`MalformedInput` for bad BTF."""
    try:
        return _btf.parse_btf_structs(data, names)
    except BadBtf as exc:
        raise MalformedInput(exc.what, offset=exc.offset) from exc
