"""The pack of the real 6.1 vmlinux: struct layouts against drgn (DWARF), ORC against the ELF
sections as ``readelf`` reports them, and the container's integrity checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from symbol_cache import (
    FORMAT_VERSION,
    BuildIdMismatch,
    CorruptPack,
    SymbolPack,
    decode_pack,
)

CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
_DRGN = CACHE / "tools" / "drgn-venv" / "bin" / "python"

# What the analyzer reads; each checked against drgn's DWARF-based offsetof.
_MEMBERS = [
    ("task_struct", "comm"), ("task_struct", "pid"), ("task_struct", "tgid"),
    ("task_struct", "stack"), ("task_struct", "__state"), ("task_struct", "tasks"),
    ("task_struct", "mm"), ("task_struct", "thread.sp"), ("task_struct", "real_parent"),
    ("list_head", "next"), ("list_head", "prev"), ("module", "list"), ("module", "name"),
    ("module", "state"), ("module", "core_layout"), ("module_layout", "base"),
    ("module_layout", "size"), ("thread_struct", "sp"), ("pt_regs", "ip"), ("pt_regs", "sp"),
    ("inactive_task_frame", "bp"), ("inactive_task_frame", "ret_addr"), ("mm_struct", "pgd"),
    ("printk_ringbuffer", "desc_ring"), ("printk_ringbuffer", "text_data_ring"),
    ("prb_desc", "text_blk_lpos"), ("printk_info", "seq"), ("printk_info", "ts_nsec"),
    ("printk_info", "text_len"), ("new_utsname", "release"),
]
_DRGN_SCRIPT = """
import json, sys, drgn
prog = drgn.Program(drgn.host_platform)
prog.extra_module(sys.argv[1], create=True).try_file(sys.argv[1], force=True)
out = {}
for spec in sys.argv[2:]:
    s, m = spec.split(":")
    t = prog.type("struct " + s)
    out[spec] = [drgn.offsetof(t, m), drgn.sizeof(t)]
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.access(_DRGN, os.X_OK), reason="drgn (fixture tools) not installed")
def test_struct_offsets_agree_with_drgn(pack61: SymbolPack, kernel61: Any) -> None:
    specs = [f"{s}:{m}" for s, m in _MEMBERS]
    out = subprocess.run([str(_DRGN), "-c", _DRGN_SCRIPT, str(kernel61.vmlinux), *specs],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    want = json.loads(out)
    for (struct_name, member), spec in zip(_MEMBERS, specs, strict=True):
        offset, size = want[spec]
        assert pack61.member_offset(struct_name, member) == offset, spec
        assert pack61.types[struct_name].size == size, spec


def _readelf_sections(path: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    secs = {}
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]{16})\s+[0-9a-f]+\s+([0-9a-f]+)", out):
        secs[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return secs


def test_orc_tables_match_sections(pack61: SymbolPack, kernel61: Any) -> None:
    secs = _readelf_sections(kernel61.vmlinux)
    assert len(pack61.orc) == secs[".orc_unwind_ip"][1] // 4 == secs[".orc_unwind"][1] // 6
    text_start, text_size = secs[".text"]
    ips = pack61.orc.ips
    assert all(ips[i] <= ips[i + 1] for i in range(len(ips) - 1))
    # Every ORC ip lies in an executable section per readelf (text, init/exit text, entry...).
    exec_ranges = _exec_ranges(kernel61.vmlinux)
    for i in range(0, len(ips), 97):
        ip = pack61.orc.base + ips[i]
        assert any(lo <= ip <= hi for lo, hi in exec_ranges), hex(ip)
    # A function's first instruction: the CFA is the return address slot (ORC_REG_SP + 8).
    kthread = pack61.symbols.address_of("kthread")
    assert kthread is not None and text_start <= kthread < text_start + text_size
    entry = pack61.orc.lookup(kthread)
    assert entry is not None and (entry.sp_reg, entry.sp_offset) == (5, 8)


def _exec_ranges(path: Path) -> list[tuple[int, int]]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    ranges = []
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]{16})\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+"
                         r"\s+(\w*X\w*)", out):
        lo, size = int(m.group(2), 16), int(m.group(3), 16)
        ranges.append((lo, lo + size))
    return ranges


def test_pack_identity_and_size(pack61: SymbolPack, pack61_bytes: bytes, kernel61: Any) -> None:
    assert pack61.build_id == kernel61.build_id
    assert pack61.meta.release == kernel61.release
    assert pack61.meta.banner and kernel61.release in pack61.meta.banner
    assert len(pack61_bytes) <= 0.05 * kernel61.vmlinux.stat().st_size


def test_roundtrip(pack61: SymbolPack, pack61_bytes: bytes) -> None:
    back = decode_pack(pack61_bytes, expect_build_id=pack61.build_id)
    assert back.meta == pack61.meta
    assert back.symbols.addrs == pack61.symbols.addrs
    assert back.orc.entries == pack61.orc.entries and back.orc.ips == pack61.orc.ips
    assert back.symbols.names == pack61.symbols.names
    assert back.types == pack61.types


@pytest.mark.parametrize("where", [0, 20, 200, 5000, -1])
def test_flipped_byte_is_detected(pack61_bytes: bytes, where: int) -> None:
    data = bytearray(pack61_bytes)
    pos = where if where >= 0 else len(data) // 2
    data[pos] ^= 0x40
    with pytest.raises((CorruptPack, BuildIdMismatch)):
        decode_pack(bytes(data), expect_build_id=decode_pack(pack61_bytes).build_id)


@pytest.mark.parametrize("cut", [0, 10, 127, 128, 4096, -1])
def test_truncated_pack_is_corrupt(pack61_bytes: bytes, cut: int) -> None:
    data = pack61_bytes[:cut] if cut >= 0 else pack61_bytes[:-1]
    with pytest.raises(CorruptPack):
        decode_pack(data)


def test_other_build_id_refused(pack61_bytes: bytes) -> None:
    with pytest.raises(BuildIdMismatch) as err:
        decode_pack(pack61_bytes, expect_build_id="00" * 20)
    assert err.value.expected == "00" * 20


def test_newer_format_refused(pack61_bytes: bytes) -> None:
    data = bytearray(pack61_bytes)
    data[8:10] = (FORMAT_VERSION + 1).to_bytes(2, "little")
    with pytest.raises(CorruptPack, match="version"):
        decode_pack(bytes(data))
