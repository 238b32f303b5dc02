"""``SymbolTable.address_of`` on small hand-made tables: found by searching the name blob,
with no index by name."""

from __future__ import annotations

from array import array

from symbol_cache import SymbolTable


def _table(names: list[str], offs: list[int] | None = None) -> SymbolTable:
    blob = b"".join(n.encode() + b"\0" for n in names)
    if offs is None:
        offs, at = [], 0
        for n in names:
            offs.append(at)
            at += len(n.encode()) + 1
    return SymbolTable(array("Q", [0x1000 * (i + 1) for i in range(len(names))]),
                       array("I", offs), array("I", [16] * len(names)), b"T" * len(names), blob)


def test_first_name_suffixes_and_repeats() -> None:
    t = _table(["start", "do_foo", "foo", "foo", "foo_bar", "x"])
    assert t.address_of("start") == 0x1000  # at offset 0, no NUL before it
    assert t.address_of("foo") == 0x3000  # not the tail of do_foo; the lower of two
    assert t.address_of("foo_bar") == 0x5000
    assert t.address_of("x") == 0x6000  # the last name
    assert t.address_of("fo") is None and t.address_of("bar") is None
    assert t.address_of("") is None and t.address_of("foo\0bar") is None


def test_malformed_offsets_are_bounded() -> None:
    # name offsets out of order, and one name no offset points at: still exact, or None
    names = ["alpha", "beta", "gamma"]
    assert _table(names, [6, 0, 11]).address_of("alpha") == 0x2000
    assert _table(names, [6, 0, 11]).address_of("gamma") == 0x3000
    assert _table(names, [0, 0, 11]).address_of("beta") is None
    # "\0x\0" 500 times, none of them a symbol's name start: given up on after a bound
    many = _table(["y"] + ["x"] * 500, [0] * 501)
    assert many.address_of("x") is None
    assert many.address_of("y") == 0x1000
