"""arm64 memory translation and register notes on synthetic inputs: the layout from VMCOREINFO
(values as the Debian 6.1 arm64 kernel exports them), a page-table walk with 4 KiB pages and
2 MiB / 1 GiB blocks, the layouts refused by name, pointer-authentication stripping, and the
arm64 NT_PRSTATUS layout. Real arm64 dumps: test_real_dumps.py (committed arm64 case)."""

from __future__ import annotations

import struct

import pytest

from vmcore.arm64 import ARM64_REG_NAMES, Arm64Memory, arm64_layout
from vmcore.errors import AddressNotMapped, CorruptDump, UnsupportedDump
from vmcore.notes import NT_PRSTATUS, Note, parse_prstatus
from vmcore.vmcoreinfo import parse_vmcoreinfo

# VMCOREINFO of the Debian 6.1.0-56-cloud-arm64 dump (arm64-6.1-null-1), the layout keys only.
KIMAGE_VOFFSET = 0xFFFFCEC5B4000000
SWAPPER = 0xFFFFCEC5F558F000
DEB61 = f"""OSRELEASE=6.1.0-56-cloud-arm64
PAGESIZE=4096
SYMBOL(swapper_pg_dir)={SWAPPER:x}
SYMBOL(_stext)=ffffcec5f4210000
NUMBER(VA_BITS)=48
NUMBER(kimage_voffset)={KIMAGE_VOFFSET:#x}
NUMBER(PHYS_OFFSET)=0x40000000
NUMBER(TCR_EL1_T1SZ)=0x10
KERNELOFFSET=4ec5ec200000
NUMBER(KERNELPACMASK)=0xffff000000000000
"""


def _info(text: str = DEB61, **replace: str):  # type: ignore[no-untyped-def]
    for key, value in replace.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(key)]
        text = "\n".join([*lines, value] if value else lines) + "\n"
    return parse_vmcoreinfo(text.encode())


def test_layout_of_debian_61() -> None:
    lay = arm64_layout(_info())
    assert lay.va_bits == 48
    assert (lay.page_offset, lay.page_end) == (0xFFFF000000000000, 0xFFFF800000000000)
    assert lay.phys_offset == 0x40000000 and lay.kimage_voffset == KIMAGE_VOFFSET


def test_layout_before_5_4_has_the_linear_map_on_top() -> None:
    # 4.x: image at 0xffff0000_08000000 + KASLR, linear map from 0xffff8000_00000000
    lay = arm64_layout(_info(**{"SYMBOL(_stext)": "SYMBOL(_stext)=ffff000008081000"}))
    assert (lay.page_offset, lay.page_end) == (0xFFFF800000000000, 1 << 64)


@pytest.mark.parametrize(("key", "line", "says"), [
    ("PAGESIZE", "PAGESIZE=16384", "16 KiB pages"),
    ("PAGESIZE", "PAGESIZE=65536", "64 KiB pages"),
    # a 52-bit kernel on a CPU without LPA2 runs with 48-bit VAs (and a shifted PHYS_OFFSET)
    ("NUMBER(VA_BITS)", "NUMBER(VA_BITS)=52", "TCR_EL1_T1SZ=16 (48-bit VA in use) with VA_BITS=52"),
    ("NUMBER(VA_BITS)", "NUMBER(VA_BITS)=39", "39-bit VA"),
    ("NUMBER(TCR_EL1_T1SZ)", "NUMBER(TCR_EL1_T1SZ)=0xc", "TCR_EL1_T1SZ=12 (52-bit VA in use)"),
])
def test_unsupported_layouts_are_named(key: str, line: str, says: str) -> None:
    with pytest.raises(UnsupportedDump) as e:
        arm64_layout(_info(**{key: line}))
    assert says in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_keys_are_corrupt() -> None:
    with pytest.raises(CorruptDump, match="kimage_voffset"):
        arm64_layout(_info(**{"NUMBER(kimage_voffset)": ""}))


def test_walk_pages_and_blocks() -> None:
    """swapper_pg_dir found through kimage_voffset; a 4 KiB page, a 2 MiB and a 1 GiB block;
    the linear map translated directly; invalid entries and user addresses typed."""
    info = _info()
    pgd = SWAPPER - KIMAGE_VOFFSET  # 0x4158f000
    base = 0x41000000
    mem = bytearray(0x1000000)
    pud, pmd, pte = 0x41600000, 0x41601000, 0x41602000
    v4k, v2m, v1g = 0xFFFF800008123000, 0xFFFF800008400000, 0xFFFF800040000000

    def put(table: int, v: int, shift: int, value: int) -> None:
        struct.pack_into("<Q", mem, table - base + 8 * ((v >> shift) & 0x1FF), value)

    put(pgd, v4k, 39, pud | 3)
    put(pud, v4k, 30, pmd | 3)
    put(pud, v1g, 30, 0x80000000 | 0x701)  # 1 GiB block (bit 1 clear)
    put(pmd, v4k, 21, pte | 3)
    put(pmd, v2m, 21, 0x48200000 | 0x701)  # 2 MiB block
    put(pte, v4k, 12, 0x0068000045678000 | 0x703)  # attribute bits above 47 are not address

    def read(a: int, n: int) -> bytes:
        return bytes(mem[a - base : a - base + n])

    km = Arm64Memory(read, info)
    assert km.to_phys(v4k + 0x10) == 0x45678010
    assert km.to_phys(v2m + 0x1234) == 0x48201234
    assert km.to_phys(v1g + 0x123456) == 0x80123456
    assert km.to_phys(0xFFFF000001234567) == 0x41234567  # linear map: PHYS_OFFSET + offset
    with pytest.raises(AddressNotMapped, match="level 0 entry"):
        km.to_phys(0xFFFFF00000000000)
    with pytest.raises(AddressNotMapped, match="TTBR1"):
        km.to_phys(0x0000FFFF12345000)


def test_walk_52_bit_lpa2() -> None:
    """52-bit VA with 4 KiB pages (LPA2): a level -1 table of 16 entries from bit 48, and
    output address bits [51:50] in descriptor bits [9:8]; the linear map from -(1 << 52)."""
    info = _info(**{"NUMBER(VA_BITS)": "NUMBER(VA_BITS)=52",
                    "NUMBER(TCR_EL1_T1SZ)": "NUMBER(TCR_EL1_T1SZ)=0xc",
                    "NUMBER(KERNELPACMASK)": "NUMBER(KERNELPACMASK)=0xfff0000000000000"})
    lay = arm64_layout(info)
    assert lay.lpa2 and (lay.page_offset, lay.page_end) == (0xFFF0000000000000,
                                                            0xFFF8000000000000)
    pgd = SWAPPER - KIMAGE_VOFFSET
    base = 0x41000000
    mem = bytearray(0x1000000)
    p4d, pud, pmd, pte = 0x41600000, 0x41601000, 0x41602000, 0x41603000
    v4k, v2m = 0xFFFF800008123000, 0xFFFF800008400000

    def put(table: int, v: int, shift: int, value: int) -> None:
        index = (v >> shift) & (0xF if shift == 48 else 0x1FF)
        struct.pack_into("<Q", mem, table - base + 8 * index, value)

    put(pgd, v4k, 48, p4d | 3)
    put(p4d, v4k, 39, pud | 3)
    put(pud, v4k, 30, pmd | 3)
    put(pmd, v4k, 21, pte | 3)
    put(pmd, v2m, 21, 0x48200000 | 1 << 8 | 0x401)  # 2 MiB block at 1 << 50 | 0x48200000
    put(pte, v4k, 12, 0x0068000045678000 | 3 << 8 | 0x403)  # OA[51:50] = 3

    def read(a: int, n: int) -> bytes:
        return bytes(mem[a - base : a - base + n])

    km = Arm64Memory(read, info)
    assert km.to_phys(v4k + 0x10) == 3 << 50 | 0x45678010
    assert km.to_phys(v2m + 0x1234) == 1 << 50 | 0x48201234
    assert km.to_phys(0xFFF0000001234567) == 0x41234567
    with pytest.raises(AddressNotMapped, match="level -1 entry"):
        km.to_phys(0xFFFE000000000000)
    with pytest.raises(AddressNotMapped, match="TTBR1"):
        km.to_phys(0xFFE0000000000000)


def test_strip_pac() -> None:
    pac = "NUMBER(KERNELPACMASK)=0xff7f000000000000"
    lay = arm64_layout(_info(**{"NUMBER(KERNELPACMASK)": pac}))
    # a signed kernel return address: PAC in bits 63:56 and 54:48, bit 55 says kernel
    assert lay.strip_pac(0x3AB5CEC5F4D9ED38 | 1 << 55) == 0xFFFFCEC5F4D9ED38
    assert lay.strip_pac(0xFFFFCEC5F4D9ED38) == 0xFFFFCEC5F4D9ED38
    assert lay.strip_pac(0x002A_FFFF_CA75_DD48 & ~(1 << 55)) == 0x0000FFFFCA75DD48
    assert arm64_layout(_info(**{"NUMBER(KERNELPACMASK)": ""})).strip_pac(0x1234) == 0x1234


def test_prstatus_arm64() -> None:
    desc = bytearray(392)  # sizeof(struct elf_prstatus) on arm64
    struct.pack_into("<I", desc, 32, 85)
    regs = list(range(100, 100 + len(ARM64_REG_NAMES)))
    struct.pack_into(f"<{len(regs)}Q", desc, 112, *regs)
    notes = [Note("CORE", NT_PRSTATUS, bytes(desc), 0)]
    (p,) = parse_prstatus(notes, "arm64")
    assert p.pid == 85 and p.regs["x0"] == 100 and p.regs["x30"] == 130
    assert (p.sp, p.rip, p.regs["pstate"]) == (131, 132, 133)
    with pytest.raises(CorruptDump, match="arm64 needs 384"):
        parse_prstatus([Note("CORE", NT_PRSTATUS, bytes(300), 0)], "arm64")


def _arm64_kdump(vmcoreinfo: str) -> bytes:
    """A synthetic kdump file whose header says aarch64 (dumpkit writes x86_64)."""
    from .dumpkit import kdump

    data = bytearray(kdump({0: bytes(4096)}, vmcoreinfo.encode()))
    machine = 12 + 65 * 4
    data[machine : machine + 65] = b"aarch64".ljust(65, b"\0")
    return bytes(data)


def test_unsupported_layout_cli_exit_1_and_partial_report(
        tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """A 52-bit-VA arm64 kernel running with 48-bit VAs (no LPA2 in the CPU): `analyze --log`
    fails with one line naming the layout (exit 1); the report keeps what the header and
    VMCOREINFO say, flagged partial with the reason."""
    from crashfleet.commands.analyze import main
    from vmcore.analyze import analyze
    from vmcore.source import BytesSource

    text = DEB61.replace("NUMBER(VA_BITS)=48", "NUMBER(VA_BITS)=52")
    text += "SYMBOL(prb)=ffffcec5f5a48360\n"
    path = tmp_path / "vmcore"  # type: ignore[operator]
    path.write_bytes(_arm64_kdump(text))
    assert main([str(path), "--log"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "arm64 TCR_EL1_T1SZ=16 (48-bit VA in use) with VA_BITS=52" in err
    r = analyze(BytesSource(path.read_bytes())).report
    assert r.partial and r.kernel.arch == "arm64"
    assert r.kernel.release == "6.1.0-56-cloud-arm64"
    assert any(n.startswith("log: arm64 TCR_EL1_T1SZ=16") for n in r.notes)
