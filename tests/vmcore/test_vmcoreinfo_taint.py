"""VMCOREINFO parsing rules and the taint table."""

from __future__ import annotations

import pytest

from vmcore.errors import CorruptDump
from vmcore.taint import TAINT_FLAGS, decode_taint
from vmcore.vmcoreinfo import parse_vmcoreinfo


@pytest.mark.parametrize(("line", "table", "key", "value"), [
    ("SYMBOL(prb)=ffffffff8cc622c0", "symbols", "prb", 0xFFFFFFFF8CC622C0),
    ("SIZE(printk_info)=88", "sizes", "printk_info", 88),
    ("OFFSET(printk_info.caller_id)=20", "offsets", "printk_info.caller_id", 20),
    ("LENGTH(mem_section)=2048", "lengths", "mem_section", 2048),
    ("NUMBER(phys_base)=-113246208", "numbers", "phys_base", -113246208),
    ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129", "numbers", "PAGE_BUDDY_MAPCOUNT_VALUE", -129),
    ("NUMBER(VA_BITS)=48", "numbers", "VA_BITS", 48),
    ("NUMBER(kimage_voffset)=0xffffffbf70000000", "numbers", "kimage_voffset",
     0xFFFFFFBF70000000),  # arm64 prints some NUMBERs in hex
    ("CONFIG_KALLSYMS=y", "configs", "CONFIG_KALLSYMS", "y"),
])
def test_keyed_lines(line: str, table: str, key: str, value: object) -> None:
    info = parse_vmcoreinfo(line.encode() + b"\n")
    assert getattr(info, table)[key] == value


@pytest.mark.parametrize(("text", "attr", "value"), [
    ("OSRELEASE=6.1.0-56-cloud-amd64", "osrelease", "6.1.0-56-cloud-amd64"),
    ("PAGESIZE=4096", "page_size", 4096),
    ("KERNELOFFSET=a200000", "kernel_offset", 0xA200000),
    ("CRASHTIME=1764092508", "crash_time", 1764092508),
    ("BUILD-ID=3b43fad5034874490492495d552c0af6a5fab235", "build_id",
     "3b43fad5034874490492495d552c0af6a5fab235"),
    # Some stable kernels export garbage in BUILD-ID (docs/decoder.md): not a build id.
    ("BUILD-ID=\x01\x02garbage", "build_id", None),
])
def test_scalars(text: str, attr: str, value: object) -> None:
    assert getattr(parse_vmcoreinfo(text.encode()), attr) == value


def test_bad_lines_do_not_hide_good_ones() -> None:
    info = parse_vmcoreinfo(b"SYMBOL(x)=zz\nno equals\nSIZE(y)=12\n\0\0trailing")
    assert info.sizes == {"y": 12}
    assert "x" not in info.symbols


def test_missing_key_is_typed() -> None:
    with pytest.raises(CorruptDump, match=r"SYMBOL\(prb\)"):
        parse_vmcoreinfo(b"").symbol("prb")


def test_taint_table_is_complete() -> None:
    assert [f.letter for f in TAINT_FLAGS] == list("PFSRMBUDAWCIOELKXTNJ")
    assert [f.bit for f in TAINT_FLAGS] == list(range(20))


@pytest.mark.parametrize(("text", "letters", "mask"), [
    ("Not tainted", "", 0),
    ("G           OE     ", "OE", (1 << 12) | (1 << 13)),
    ("P        W  O      ", "PWO", 1 | (1 << 9) | (1 << 12)),
    ("G    B D  W   ELK  ", "BDWELK", (1 << 5) | (1 << 7) | (1 << 9) | (1 << 13) | (1 << 14)
     | (1 << 15)),
    ("PFSRMBUDAWCIOELKXTNJ", "PFSRMBUDAWCIOELKXTNJ", (1 << 20) - 1),
    ("[O]=OOT_MODULE, [E]=UNSIGNED_MODULE", "OE", (1 << 12) | (1 << 13)),
])
def test_taint_decode(text: str, letters: str, mask: int) -> None:
    t = decode_taint(text)
    assert t.letters == letters
    assert t.mask == mask
    assert t.unknown == ""
