"""Lazily read BTF (as the dump's own symbols read it from kernel memory) gives the layouts
the whole-section parse gives (the one packs are built with), on the real Debian kernels'
``.BTF``, while reading a small part of it."""

from __future__ import annotations

import pytest
from elftools.elf.elffile import ELFFile

from vmcore.btf import parse_btf_structs
from vmcore.btf_lazy import lazy_btf_types
from vmcore.dumpsyms import ANALYSIS_STRUCTS

from .conftest import debug_vmlinux

RELEASES = ("5.10.0-32-cloud-amd64", "6.1.0-56-cloud-amd64", "6.12.118+deb13-cloud-amd64")
_BTF: dict[str, bytes] = {}


def _btf(release: str) -> bytes:
    """The ``.BTF`` section of ``release``'s debug vmlinux."""
    if release not in _BTF:
        with debug_vmlinux(release).open("rb") as f:
            section = ELFFile(f).get_section_by_name(".BTF")
            assert section is not None, f"{release}: no .BTF section"
            _BTF[release] = section.data()
    return _BTF[release]


@pytest.mark.parametrize("release", RELEASES)
def test_lazy_layouts_equal_the_whole_parse(release: str) -> None:
    data = _btf(release)
    whole = parse_btf_structs(data, ANALYSIS_STRUCTS)
    lazy = lazy_btf_types(lambda off, n: data[off:off + n], len(data), ANALYSIS_STRUCTS)
    assert set(lazy) == set(whole) and len(whole) >= 20
    for name, layout in whole.items():
        assert lazy[name] == layout, name  # members' sizes and C types included
    assert lazy.notes == ()


@pytest.mark.parametrize("release", RELEASES)
def test_the_analysis_lookups_read_a_small_part(release: str) -> None:
    """What deep analysis asks (task_struct, module and its layout types, pt_regs, and the
    offsets and sizes it reads) costs a few percent of the section, not all of it."""
    data = _btf(release)
    read = [0]

    def fetch(off: int, n: int) -> bytes:
        read[0] += n
        return data[off:off + n]

    types = lazy_btf_types(fetch, len(data), ANALYSIS_STRUCTS)
    task, module = types["task_struct"], types["module"]
    assert {"comm", "pid", "tasks", "stack"} <= set(task.members)
    assert task.members["comm"].type == "char[16]" and task.members["comm"].size == 16
    layout = "module_memory" if "mem" in module.members else "module_layout"
    assert types[layout].members["base"].type == "void *"
    assert types["mod_kallsyms"].members["num_symtab"].size in (4, 8)
    assert "pt_regs" in types
    assert read[0] < len(data) // 10, f"{read[0]} of {len(data)} bytes read"
