"""The dump's own symbols from hostile memory: lying kallsyms counts and offsets, BTF with
cycles and absurd sizes, ORC tables pointing anywhere → bounded work, typed errors, partial
results flagged. Memory is a synthetic map of regions (what a dump would hold), built here
byte by byte in the kernel's formats (``scripts/kallsyms.c``, ``include/uapi/linux/btf.h``)."""

from __future__ import annotations

import struct
from array import array

import pytest

from vmcore.btf import MAX_MEMBER_VISITS, parse_btf_structs
from vmcore.btf_lazy import BtfTypes, lazy_btf_types
from vmcore.dumpsyms import symbols_from_dump
from vmcore.errors import AddressNotMapped, BadBtf, BadKallsyms, BadOrc
from vmcore.kallsyms import MAX_SYMBOLS, read_kallsyms
from vmcore.orc import MemoryOrc
from vmcore.vmcoreinfo import VmcoreInfo

SLIDE = 0x2D000000
TEXT = 0xFFFFFFFF81000000 + SLIDE
TABLES = 0xFFFFFFFF82000000 + SLIDE


class Memory:
    """Regions of kernel virtual memory; anything else is unmapped."""

    def __init__(self) -> None:
        self.regions: dict[int, bytes] = {}
        self.reads = 0
        self.bytes = 0

    def put(self, addr: int, data: bytes) -> None:
        self.regions[addr] = data

    def read(self, addr: int, length: int) -> bytes:
        self.reads += 1
        self.bytes += length
        for start, data in self.regions.items():
            if start <= addr and addr + length <= start + len(data):
                return data[addr - start : addr - start + length]
        raise AddressNotMapped("unmapped", offset=addr, space="virt")


def _kallsyms(mem: Memory, syms: list[tuple[str, int]], *, percpu: bool = True,
              count: int | None = None, base: int = TEXT) -> dict[str, int]:
    """Identity tokens (token i is the character i): each name byte is its own token."""
    table = b"".join(bytes([i or 63]) + b"\0" for i in range(256))
    index = array("H", (2 * i for i in range(256))).tobytes()
    names = b"".join(bytes([len(n)]) + n.encode() for n, _a in syms)
    offs = array("i")
    for _n, a in syms:
        if a < 0xFFFFFFFF80000000:
            offs.append(a)
        else:
            offs.append(base - 1 - a if percpu else (a - base) - (1 << 32) * ((a - base) >> 31))
    at = {"kallsyms_num_syms": TABLES, "kallsyms_relative_base": TABLES + 8,
          "kallsyms_offsets": TABLES + 0x100, "kallsyms_token_table": TABLES + 0x10000,
          "kallsyms_token_index": TABLES + 0x11000, "kallsyms_names": TABLES + 0x20000}
    mem.put(TABLES, struct.pack("<IIQ", len(syms) if count is None else count, 0, base))
    mem.put(at["kallsyms_offsets"], offs.tobytes())
    mem.put(at["kallsyms_token_table"], table.ljust(0x1000, b"\0"))
    mem.put(at["kallsyms_token_index"], index)
    mem.put(at["kallsyms_names"], names.ljust(0x1000, b"\0"))
    stext = next((a for n, a in syms if n == "T_stext"), TEXT)
    return {**at, "_stext": stext}


_SYMS = [("Tcurrent_task", 0x1FB80), ("T_stext", TEXT), ("Tstart_kernel", TEXT + 0x100),
         ("tkthread", TEXT + 0x200), ("Tinit_task", TEXT + 0x1000), ("T_etext", TEXT + 0x300)]


@pytest.mark.parametrize("percpu", [True, False])
def test_both_layouts_are_told_apart_by_stext(percpu: bool) -> None:
    mem = Memory()
    ks = read_kallsyms(mem.read, _kallsyms(mem, _SYMS, percpu=percpu), SLIDE)
    assert ks.layout == ("absolute-percpu" if percpu else "relative")
    if percpu:
        assert ks.address_of("current_task") == 0x1FB80  # a per-cpu offset stays one
    assert ks.address_of("kthread") == TEXT + 0x200 - SLIDE
    hit = ks.lookup(TEXT + 0x2DA - SLIDE)
    assert hit is not None and (hit.name, hit.offset, hit.size, hit.kind) == \
        ("kthread", 0xDA, 0x100, "t")


def test_a_count_of_2_31_is_refused_before_any_work() -> None:
    mem = Memory()
    syms = _kallsyms(mem, _SYMS, count=2**31)
    with pytest.raises(BadKallsyms, match="kallsyms_num_syms 2147483648"):
        read_kallsyms(mem.read, syms, SLIDE)
    assert mem.bytes < 64
    assert MAX_SYMBOLS < 2**31


def test_a_count_larger_than_the_names_ends_in_a_typed_error() -> None:
    mem = Memory()
    syms = _kallsyms(mem, _SYMS, count=len(_SYMS) + 50)
    with pytest.raises(BadKallsyms):
        read_kallsyms(mem.read, syms, SLIDE)
    assert mem.bytes < 1 << 20


def test_lying_offsets_fail_the_stext_check() -> None:
    mem = Memory()
    syms = _kallsyms(mem, _SYMS)
    syms["_stext"] = TEXT + 0x40  # VMCOREINFO and the table disagree
    with pytest.raises(BadKallsyms, match="_stext decodes to neither"):
        read_kallsyms(mem.read, syms, SLIDE)


def test_token_index_beyond_the_table() -> None:
    mem = Memory()
    syms = _kallsyms(mem, _SYMS)
    mem.put(syms["kallsyms_token_index"], array("H", [0xFFF0] * 256).tobytes())
    with pytest.raises(BadKallsyms, match="token at 65520 is not terminated"):
        read_kallsyms(mem.read, syms, SLIDE)


def test_missing_exports_say_before_v6_0() -> None:
    with pytest.raises(BadKallsyms, match=r"before v6\.0"):
        read_kallsyms(Memory().read, {"_stext": TEXT}, SLIDE)


def _info(syms: dict[str, int]) -> VmcoreInfo:
    return VmcoreInfo(osrelease="6.1.0-test", kernel_offset=SLIDE, symbols=syms)


def test_absurd_btf_and_orc_spans_become_notes() -> None:
    """__stop_BTF before __start_BTF, ORC tables 1 GiB long: no read of that size is
    tried; the symbols are still usable, with notes (the report is then partial)."""
    mem = Memory()
    syms = _kallsyms(mem, [*_SYMS, ("R__start_BTF", TEXT + 0x500), ("R__stop_BTF", TEXT + 0x400),
                           ("R__start_orc_unwind_ip", TEXT + 0x600),
                           ("R__stop_orc_unwind_ip", TEXT + 0x600 + (1 << 30)),
                           ("R__start_orc_unwind", TEXT + 0x700),
                           ("R__stop_orc_unwind", TEXT + 0x800)])
    own = symbols_from_dump(mem.read, _info(syms))
    assert own.types == {} and own.orc.lookup(TEXT) is None
    assert any(n.startswith("btf: __start_BTF..__stop_BTF spans") for n in own.notes)
    assert any(n.startswith("orc: __start_orc_unwind_ip") for n in own.notes)
    assert mem.bytes < 1 << 20


def test_orc_pointing_anywhere() -> None:
    """ip entries that are extreme 32-bit offsets, out of order: a table whose lookups stay
    inside it; sections of disagreeing lengths: a typed error."""
    ips = array("i", [0x7FFFFFFF, -0x80000000, 5, 0]).tobytes()
    orc = MemoryOrc(ips, 0xFFFFFFFF81000000, bytes(range(24)), None)
    assert orc.lookup(0xFFFFFFFF81000000 - 0x80000000 + 4) is not None
    assert orc.lookup(0) is None
    last = orc.lookup(2**64 - 1)  # the last entry governs what follows it, as in the kernel
    assert last is not None and last.ip <= 2**64 - 1
    with pytest.raises(BadOrc, match="disagree"):
        MemoryOrc(ips, 0xFFFFFFFF81000000, b"\0" * 7, None)
    orc = MemoryOrc(array("i", [40, -4, 1000, 8]).tobytes(), 0xFFFFFFFF81000000,
                    bytes(range(24)), None)
    for a in (0, 0xFFFFFFFF81000000, 0xFFFFFFFF81000008, 2**64 - 1):
        e = orc.lookup(a)
        assert e is None or 0 <= e.sp_reg < 16


def _btf(types: list[bytes], strings: bytes = b"\0a\0") -> bytes:
    body = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body),
                       len(strings)) + body + strings


def _struct(name_off: int, members: list[tuple[int, int, int]], size: int = 8) -> bytes:
    info = (4 << 24) | len(members)
    return struct.pack("<III", name_off, info, size) + b"".join(
        struct.pack("<III", *m) for m in members)


def test_btf_anonymous_member_cycle() -> None:
    """struct a { struct a; } (anonymous, so it is flattened): a cycle, refused."""
    data = _btf([_struct(1, [(0, 1, 0)])])
    with pytest.raises(BadBtf, match="contains itself"):
        parse_btf_structs(data, ["a"])


def test_btf_exponential_anonymous_members_are_capped() -> None:
    """Each of 16 levels holds 60,000 anonymous members of the next: 60,000^16 visits
    without a cap; with it a typed error after MAX_MEMBER_VISITS."""
    n, levels = 60_000, 16
    types = [_struct(1 if i == 0 else 0, [(0, i + 2, 0)] * n) for i in range(levels)]
    types.append(_struct(0, [(1, 0, 0)]))
    with pytest.raises(BadBtf, match=f"more than {MAX_MEMBER_VISITS}"):
        parse_btf_structs(_btf(types), ["a"])


def test_btf_absurd_sizes_stay_numbers() -> None:
    """An array of 2^32-1 arrays of 2^32-1 longs: its size is computed, never allocated."""
    int_t = struct.pack("<IIII", 0, 1 << 24, 8, 64)
    arr1 = struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, 0xFFFFFFFF)
    arr2 = struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 2, 1, 0xFFFFFFFF)
    a = _struct(1, [(1, 3, 0)], size=0xFFFFFFFF)
    layouts = parse_btf_structs(_btf([int_t, arr1, arr2, a]), ["a"])
    assert layouts["a"].members["a"].size == 8 * 0xFFFFFFFF ** 2


# kallsyms as the kernel writes it: sorted by address (the per-cpu offset first)
_SORTED = sorted(_SYMS, key=lambda s: s[1])


def _indexed(mem: Memory, syms: list[tuple[str, int]], *, seqs: bytes | None = None,
             markers: bytes | None = None) -> dict[str, int]:
    """The tables as v6.2+ lays them out (names, markers, seqs_of_names, token table, each
    8-byte aligned), with identity tokens; ``seqs``/``markers`` replace the real ones."""
    at = _kallsyms(mem, syms)  # counts, offsets and base as before
    # lookups read whole pages: the count, base and offsets as the one page they share
    page = bytearray(mem.regions[TABLES].ljust(0x1000, b"\0"))
    offs = mem.regions.pop(at["kallsyms_offsets"])
    page[0x100:0x100 + len(offs)] = offs
    mem.put(TABLES, bytes(page))
    names = b"".join(bytes([len(n)]) + n.encode() for n, _a in syms)
    count = len(syms)
    real_markers = array("I", [0])  # every 256th name; one block here
    order = sorted(range(count), key=lambda i: syms[i][0][1:].encode())
    real_seqs = b"".join(i.to_bytes(3, "big") for i in order)
    base = TABLES + 0x40000
    m_at = (base + len(names) + 7) & ~7
    s_at = (m_at + 4 * len(real_markers) + 7) & ~7
    t_at = (s_at + 3 * count + 7) & ~7
    table = b"".join(bytes([i or 63]) + b"\0" for i in range(256)).ljust(0x1000, b"\0")
    index = array("H", (2 * i for i in range(256))).tobytes()
    blob = bytearray(((t_at + len(table) + len(index) - base) | 0xFFF) + 1)  # whole pages
    blob[:len(names)] = names
    mk = markers if markers is not None else real_markers.tobytes()
    blob[m_at - base:m_at - base + len(mk)] = mk
    sq = seqs if seqs is not None else real_seqs
    blob[s_at - base:s_at - base + len(sq)] = sq
    blob[t_at - base:t_at - base + len(table) + len(index)] = table + index
    mem.put(base, bytes(blob))
    return {**at, "kallsyms_names": base, "kallsyms_token_table": t_at,
            "kallsyms_token_index": t_at + 0x1000}


def test_the_name_index_is_used_and_agrees() -> None:
    from vmcore.kallsyms import IndexedKallsyms, Kallsyms

    mem = Memory()
    syms = _indexed(mem, _SORTED)
    fast = read_kallsyms(mem.read, syms, SLIDE)
    full = read_kallsyms(mem.read, syms, SLIDE, in_place=False)
    assert isinstance(fast, IndexedKallsyms) and isinstance(full, Kallsyms)
    for name in ("current_task", "kthread", "init_task", "_etext", "nothing"):
        assert fast.address_of(name) == full.address_of(name)
    hit = fast.lookup(TEXT + 0x2DA - SLIDE)
    assert hit is not None and (hit.name, hit.offset, hit.size, hit.kind) == \
        ("kthread", 0xDA, 0x100, "t")


@pytest.mark.parametrize("damage", ["seqs", "markers", "seq-out-of-range"])
def test_a_lying_name_index_is_not_believed(damage: str) -> None:
    """seqs_of_names not sorted by name, or markers that do not end where the names do: the
    index is refused (every name decoded instead, same answers); seqs pointing past the
    table: names are "not found", never an exception, with bounded reads."""
    mem = Memory()
    n = len(_SORTED)
    if damage == "seqs":
        syms = _indexed(mem, _SORTED, seqs=b"".join(i.to_bytes(3, "big") for i in range(n)))
    elif damage == "markers":
        syms = _indexed(mem, _SORTED, markers=array("I", [7]).tobytes())
    else:
        syms = _indexed(mem, _SORTED, seqs=b"\xff\xff\xff" * n)
    ks = read_kallsyms(mem.read, syms, SLIDE)
    assert ks.address_of("kthread") == TEXT + 0x200 - SLIDE or damage == "seq-out-of-range"
    assert ks.address_of("nothing") is None
    assert mem.bytes < 1 << 20


# -- the same BTF read lazily, as from a dump (vmcore.btf.lazy_btf_types) --------------------

class _Fetch:
    """``fetch(offset, length)`` over ``data``, counting the bytes read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.bytes = data, 0

    def __call__(self, off: int, n: int) -> bytes:
        assert off >= 0 and off + n <= len(self.data), "read outside the BTF span"
        self.bytes += n
        return self.data[off:off + n]


def _lazy(data: bytes, names: list[str]) -> BtfTypes:
    return lazy_btf_types(_Fetch(data), len(data), names)


def test_lazy_btf_cycle_is_a_note_and_a_missing_type() -> None:
    types = _lazy(_btf([_struct(1, [(0, 1, 0)])]), ["a"])
    assert "a" not in types and types.get("a") is None and list(types) == []
    assert any("contains itself" in n for n in types.notes)


def test_lazy_btf_exponential_anonymous_members_are_capped() -> None:
    n, levels = 60_000, 16
    types = [_struct(1 if i == 0 else 0, [(0, i + 2, 0)] * n) for i in range(levels)]
    types.append(_struct(0, [(1, 0, 0)]))
    got = _lazy(_btf(types), ["a"])
    assert "a" not in got
    assert any(f"more than {MAX_MEMBER_VISITS}" in n for n in got.notes)


def test_lazy_btf_absurd_sizes_stay_numbers() -> None:
    int_t = struct.pack("<IIII", 0, 1 << 24, 8, 64)
    arr1 = struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, 0xFFFFFFFF)
    arr2 = struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 2, 1, 0xFFFFFFFF)
    a = _struct(1, [(1, 3, 0)], size=0xFFFFFFFF)
    data = _btf([int_t, arr1, arr2, a])
    assert _lazy(data, ["a"])["a"] == parse_btf_structs(data, ["a"])["a"]
    assert _lazy(data, ["a"])["a"].members["a"].size == 8 * 0xFFFFFFFF ** 2


def test_lazy_btf_member_of_a_type_beyond_the_section() -> None:
    """A member naming type 999 (there are 2): that member's size is 0 and its type "?",
    with a note; its offset and the other members stay usable."""
    int_t = struct.pack("<IIII", 0, 1 << 24, 4, 32)
    a = _struct(1, [(3, 999, 0), (5, 1, 64)], size=16)
    types = _lazy(_btf([int_t, a], b"\0a\0b\0c\0"), ["a"])
    b, c = types["a"].members["b"], types["a"].members["c"]
    assert (b.offset, b.size, b.type) == (0, 0, "?")
    assert (c.offset, c.size, c.type) == (8, 4, "?")  # an unnamed int prints as "?"
    assert any("type id 999 out of range" in n for n in types.notes)


@pytest.mark.parametrize("damage", ["unknown-kind", "overrun", "name-outside",
                                    "name-unterminated"])
def test_lazy_btf_damage_after_the_wanted_type(damage: str) -> None:
    """Damage after a struct leaves it usable; a struct behind damaged records is missing,
    a struct with a bad name is skipped (the next one called "b" is found): notes, never
    an exception; no read leaves the BTF span (``_Fetch`` asserts)."""
    good = _struct(1, [], size=8)
    strings = b"\0a\0b\0"
    bad = {"unknown-kind": struct.pack("<III", 0, 30 << 24, 0),
           "overrun": struct.pack("<III", 0, (4 << 24) | 0xFFFF, 0),
           "name-outside": _struct(0x7FFFFFFF, [], size=8),
           "name-unterminated": _struct(3, [], size=8)}[damage]
    if damage == "name-unterminated":
        strings = b"\0a\0bbbb"
    data = _btf([good, bad, _struct(3, [], size=8)], strings)
    types = _lazy(data, ["a", "b"])
    assert types["a"].size == 8
    assert ("b" in types) == (damage == "name-outside")
    assert types.notes, "the damage is noted"


def test_lazy_btf_header_lies_are_typed_errors() -> None:
    data = _btf([_struct(1, [], size=8)])
    with pytest.raises(BadBtf, match="outside the data"):
        lazy_btf_types(_Fetch(data), len(data) - 1, ["a"])
    with pytest.raises(BadBtf, match="magic"):
        lazy_btf_types(_Fetch(b"\0" * 64), 64, ["a"])


def test_lazy_btf_reads_only_what_a_lookup_needs() -> None:
    """20,000 structs after the wanted one: finding it reads the first chunk only."""
    types = [_struct(1, [], size=8)] + [_struct(3, [(3, 1, 0)], size=8)] * 20_000
    data = _btf(types, b"\0a\0b\0")
    fetch = _Fetch(data)
    got = lazy_btf_types(fetch, len(data), ["a", "b"])
    assert got["a"].size == 8
    assert fetch.bytes < 32 << 10 < len(data) // 8
    assert got["b"].members["b"].type == "struct a"
