"""BTF read piecewise, as lookups need it: a dump's ``__start_BTF``..``__stop_BTF``.

Megabytes of kernel memory, of which the analysis needs tens of KiB: the type section is read
a chunk at a time and indexed only up to the types asked for, the string section a chunk at
a time as names are read, and a member's size and C type resolved on first use. The records
are parsed by :class:`vmcore.btf._Btf`'s code (one parser with the whole-section one packs
use); damage met on the way is a note, never an exception.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping

from vmcore.btf import (  # the record layout is vmcore.btf's; this module reads it lazily
    _DATASEC,
    _HDR,
    _MAX_TYPES,
    _STRUCT,
    _UNION,
    _VAR,
    Member,
    StructLayout,
    _Btf,
    _end_error,
    _header,
    _index_records,
)
from vmcore.errors import AnalyzerError, BadBtf

__all__ = ["BtfTypes", "lazy_btf_types"]

_MAX_NAME = 4096
_LAZY_CHUNK = 16 << 10  # bytes of the type section read at a time (a multiple of 4)
_LAZY_STR_CHUNK = 4 << 10


class _LazyBtf(_Btf):
    """The same BTF read piecewise through ``fetch(offset, length)``: the type section a chunk
    at a time, indexed as far as the types asked for; the string section a chunk at a time,
    as names are read. Kernel BTF lists the types the analysis asks for among its first few
    thousand and its strings in order of first use, so a lookup reads tens of KiB of the
    section's megabytes. Errors met while reading (malformed BTF, unreadable memory) are kept
    in ``notes``; a member whose type cannot be resolved has size 0 and type ``?``."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int):
        self._fetch = fetch
        self._t0, self._type_len, self._s0, self._str_len = _header(
            fetch(0, min(size, _HDR.size)), size)
        self.visits = 0
        self.words = array("I")
        self.offsets = array("I", [0])
        self.notes: list[str] = []
        self._pos = 0  # word index of the next record to index
        self._loaded = 0  # bytes of the type section in ``words``
        self._broken = False
        self._str_chunks: dict[int, bytes] = {}
        self._by_name: dict[str, int] = {}  # struct/union name -> first type id
        self._scanned = 1  # types below this id are in ``_by_name``
        self._lengths: dict[int, int] = {}  # info word -> record length in words

    def _more(self) -> bool:
        """Read the next chunk of the type section and index the records it completes;
        False when the section is read (or found malformed)."""
        if self._broken or self._loaded >= self._type_len:
            return False
        n = min(_LAZY_CHUNK, self._type_len - self._loaded)
        raw = self._fetch(self._t0 + self._loaded, n)
        if len(raw) != n:
            raise BadBtf("BTF type section: short read", offset=self._t0 + self._loaded)
        chunk = array("I")
        chunk.frombytes(raw)
        if sys.byteorder == "big":
            chunk.byteswap()
        self.words.extend(chunk)
        self._loaded += n
        try:
            self._index()
        except BadBtf as exc:  # the types before the damage stay usable
            self._broken = True
            self.notes.append(f"btf: {exc}")
        return True

    def _index(self) -> None:
        """Index the complete records loaded (:func:`vmcore.btf._index_records`)."""
        self._pos = _index_records(self.words, self.offsets, self._pos, self._lengths, self._t0)
        if self._loaded >= self._type_len and self._pos != len(self.words):
            raise _end_error(self._pos, len(self.words), self._t0)

    def _ensure(self, tid: int) -> None:
        while tid >= len(self.offsets) and self._more():
            pass

    def name(self, off: int) -> str:
        if not 0 <= off < self._str_len:
            raise BadBtf("BTF name offset outside the string section", offset=off)
        out = b""
        i, start = divmod(off, _LAZY_STR_CHUNK)
        while True:
            chunk = self._strings_chunk(i)
            end = chunk.find(b"\0", start)
            if end >= 0:
                return (out + chunk[start:end]).decode("utf-8", "replace")
            out += chunk[start:]
            i, start = i + 1, 0
            if len(out) > _MAX_NAME or i * _LAZY_STR_CHUNK >= self._str_len:
                raise BadBtf("BTF name not terminated in the string section", offset=off)

    def _strings_chunk(self, i: int) -> bytes:
        got = self._str_chunks.get(i)
        if got is None:
            at = i * _LAZY_STR_CHUNK
            got = self._str_chunks[i] = self._fetch(
                self._s0 + at, min(_LAZY_STR_CHUNK, self._str_len - at))
        return got

    def find(self, name: str) -> int | None:
        """Type id of the first struct or union called ``name``, indexing types as far as
        needed (to the end when there is none)."""
        w, offsets, by_name = self.words, self.offsets, self._by_name
        while name not in by_name:
            while self._scanned < len(offsets) and name not in by_name:
                tid, self._scanned = self._scanned, self._scanned + 1
                p = offsets[tid]
                if w[p] and (w[p + 1] >> 24) & 0x1F in (_STRUCT, _UNION):
                    try:
                        by_name.setdefault(self.name(w[p]), tid)
                    except BadBtf as exc:  # that type is skipped
                        self.notes.append(f"btf: type {tid}: {exc}")
            if name not in by_name and not self._more():
                return None
        return by_name[name]

    def layout(self, name: str) -> StructLayout | None:
        tid = self.find(name)
        if tid is None:
            return None
        p = self.offsets[tid]
        info, size = self.words[p + 1], self.words[p + 2]
        members: dict[str, Member] = {}
        self.members(tid, 0, members, 0)
        kind = "union" if (info >> 24) & 0x1F == _UNION else "struct"
        return StructLayout(name, kind, size, members)

    def datasec(self, section: str) -> dict[str, int]:
        """The variables of the ``DATASEC`` called ``section`` and their offsets in it ({}
        when there is none). pahole writes the data sections last, so the whole type section
        is indexed and searched from its end."""
        self._ensure(_MAX_TYPES + 1)
        w, offsets = self.words, self.offsets
        for tid in range(len(offsets) - 1, 0, -1):
            p = offsets[tid]
            info = w[p + 1]
            if (info >> 24) & 0x1F != _DATASEC or self.name(w[p]) != section:
                continue
            out: dict[str, int] = {}
            for i in range(info & 0xFFFF):
                var, offset = w[p + 3 + 3 * i], w[p + 4 + 3 * i]
                name, kind, *_rest = self.type(var)
                if kind == _VAR:
                    out.setdefault(name, offset)
            return out
        return {}

    def _member(self, name: str, bit_offset: int, bit_size: int, mtype: int) -> Member:
        return Member(name, bit_offset, bit_size, resolve=lambda: self._resolve(mtype))

    def _resolve(self, mtype: int) -> tuple[int, str]:
        try:
            return self.size_of(mtype), self.type_name(mtype)
        except AnalyzerError as exc:
            self.notes.append(f"btf: {exc}")
            return 0, "?"


class BtfTypes(Mapping[str, StructLayout]):
    """Layouts of ``names`` from BTF read lazily (:func:`lazy_btf_types`), each parsed on its
    first lookup. The keys are those of ``names`` that BTF defines; a lookup that meets
    malformed BTF or unreadable memory finds nothing and leaves a note in ``notes``."""

    def __init__(self, btf: _LazyBtf, names: Iterable[str]):
        self._btf = btf
        self._names = tuple(dict.fromkeys(names))
        self._got: dict[str, StructLayout | None] = {}

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._btf.notes))

    def _get(self, name: str) -> StructLayout | None:
        if name not in self._names:
            return None
        if name not in self._got:
            try:
                self._got[name] = self._btf.layout(name)
            except AnalyzerError as exc:
                self._btf.notes.append(f"btf: {exc}")
                self._got[name] = None
        return self._got[name]

    def datasec(self, section: str) -> dict[str, int]:
        """Variables of the data section ``section`` (``.data..percpu``) by their offsets in
        it; {} and a note when BTF is malformed or unreadable there."""
        try:
            return self._btf.datasec(section)
        except AnalyzerError as exc:
            self._btf.notes.append(f"btf: {exc}")
            return {}

    def __getitem__(self, name: str) -> StructLayout:
        got = self._get(name)
        if got is None:
            raise KeyError(name)
        return got

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (n for n in self._names if self._get(n) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def lazy_btf_types(fetch: Callable[[int, int], bytes], size: int, names: Iterable[str]
                   ) -> BtfTypes:
    """Layouts of the structs/unions called ``names`` in the ``size`` bytes of BTF that
    ``fetch(offset, length)`` reads, read and parsed only as far as lookups need (a dump's
    BTF: megabytes of kernel memory, most of it never needed). Raises
    :class:`~vmcore.errors.BadBtf` when the header is malformed."""
    return BtfTypes(_LazyBtf(fetch, size), names)
