"""Every reader fails with a typed error, never an arbitrary exception or an unbounded loop, on
damaged input: random bytes and mutations of the real 6.1 sections."""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbol_cache import CorruptPack, MalformedInput, decode_pack
from symbol_cache._elf import ElfImage, _gnu_build_id
from symbol_cache.btf import parse_btf_structs
from symbol_cache.errors import BuildIdMismatch, SourceUnavailable
from symbol_cache.lines import _Program, line_index
from symbol_cache.sources.debimport import extract_vmlinux

_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@pytest.fixture(scope="module")
def real_sections(kernel61: Any) -> dict[str, bytes]:
    with ElfImage(kernel61.vmlinux) as img:
        out = {name: img.section_bytes(name) or b"" for name in
               (".BTF", ".debug_aranges", ".notes")}
        out["line_head"] = img.read_in_section(".debug_line", 0, 64 << 10)
        out["abbrev"] = img.section_bytes(".debug_abbrev") or b""
        out["info_head"] = img.read_in_section(".debug_info", 0, 256)
    return out


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, val in edits:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf)


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1,
                  max_size=8)


@_FUZZ
@given(edits=_EDITS, cut=st.integers(0, 1 << 22))
def test_btf_damaged(real_sections: dict[str, bytes], edits: list[tuple[int, int]],
                     cut: int) -> None:
    data = _mutate(real_sections[".BTF"], edits)[: max(cut, 24)]
    with contextlib.suppress(MalformedInput):
        parse_btf_structs(data, ["task_struct", "list_head", "module"])


@_FUZZ
@given(data=st.binary(max_size=512))
def test_btf_random(data: bytes) -> None:
    with contextlib.suppress(MalformedInput):
        parse_btf_structs(b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + data, ["x"])


@_FUZZ
@given(edits=_EDITS, start=st.integers(0, 60000))
def test_line_program_damaged(real_sections: dict[str, bytes], edits: list[tuple[int, int]],
                              start: int) -> None:
    data = _mutate(real_sections["line_head"], edits)
    try:
        prog = _Program(data, 0, b"")
        prog.lookup(0xFFFFFFFF81000000 + start)
    except MalformedInput:
        pass


@_FUZZ
@given(edits=_EDITS)
def test_aranges_and_unit_headers_damaged(real_sections: dict[str, bytes],
                                          edits: list[tuple[int, int]]) -> None:
    aranges = _mutate(real_sections[".debug_aranges"][:4096], edits)
    head = _mutate(real_sections["info_head"], edits)
    with contextlib.suppress(MalformedInput):
        line_index(aranges, lambda _off: head, real_sections["abbrev"])


@_FUZZ
@given(data=st.binary(max_size=256))
def test_notes_random(data: bytes) -> None:
    result = _gnu_build_id(data)
    assert result is None or isinstance(result, str)


@_FUZZ
@given(edits=_EDITS, cut=st.integers(0, 1 << 24))
def test_pack_damaged(pack61_bytes: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = _mutate(pack61_bytes, edits)[:cut]
    # verify=False skips the checksum so that the section parsers see the damage.
    with contextlib.suppress(CorruptPack, BuildIdMismatch):
        decode_pack(data, verify=False)


@_FUZZ
@given(data=st.binary(max_size=2048))
def test_deb_random(tmp_path: Path, data: bytes) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"!<arch>\n" + data)
    with contextlib.suppress(MalformedInput, SourceUnavailable):
        extract_vmlinux(deb, tmp_path / "vmlinux")
    # Random bytes never contain a whole vmlinux member, so nothing may appear.
    assert not (tmp_path / "vmlinux").exists()


def test_deb_with_truncated_vmlinux_leaves_nothing(tmp_path: Path) -> None:
    """A package whose tar stream ends inside the vmlinux: no file appears."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        info = tarfile.TarInfo("./usr/lib/debug/boot/vmlinux-9.9.9-test")
        info.size = 1 << 20
        tar.addfile(info, io.BytesIO(b"\x7fELF" + b"\0" * ((1 << 20) - 4)))
    payload = tar_buf.getvalue()[: 300_000]  # cut inside the member
    member = b"data.tar/".ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + \
        b"100644".ljust(8) + str(len(payload)).encode().ljust(10) + b"`\n"
    deb = tmp_path / "linux-image-9.9.9-test-dbg_1_amd64.deb"
    deb.write_bytes(b"!<arch>\n" + member + payload)
    with pytest.raises(MalformedInput):
        extract_vmlinux(deb, tmp_path / "vmlinux")
    assert list(tmp_path.iterdir()) == [deb]
