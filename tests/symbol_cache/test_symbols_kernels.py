"""The other pinned Debian kernels (5.10, 6.12), when the fixture factory has fetched them:
lookups against nm and struct layouts against drgn, including the layouts that exist only in
some kernels (pcpu_hot since v6.2, module_memory since v6.4, .orc_header since v6.5)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from symbol_cache import build_pack, decode_pack, encode_pack

CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
_DRGN = CACHE / "tools" / "drgn-venv" / "bin" / "python"
_OTHERS = ["5.10.0-32-cloud-amd64", "6.12.118+deb13-cloud-amd64"]
_DRGN_SCRIPT = """
import json, sys, drgn
prog = drgn.Program(drgn.host_platform)
prog.extra_module(sys.argv[1], create=True).try_file(sys.argv[1], force=True)
out = {}
for spec in sys.argv[2:]:
    s, m = spec.split(":")
    try:
        out[spec] = drgn.offsetof(prog.type("struct " + s), m)
    except LookupError:
        out[spec] = None
print(json.dumps(out))
"""
_MEMBERS = ["task_struct:comm", "task_struct:pid", "task_struct:stack", "task_struct:thread.sp",
            "pcpu_hot:current_task", "module_memory:base", "module_layout:base",
            "module:mem", "module:core_layout"]


@pytest.mark.slow
@pytest.mark.parametrize("release", _OTHERS)
def test_other_kernel(release: str) -> None:
    vmlinux = CACHE / "kernels" / release / "vmlinux"
    if not vmlinux.exists():
        pytest.skip(f"{release} not fetched (tests/fixtures/factory/fetch-kernels.sh)")
    pack = decode_pack(encode_pack(build_pack(vmlinux)))
    nm = subprocess.run(["nm", "-n", "--defined-only", str(vmlinux)], capture_output=True,
                        text=True, check=True).stdout
    names: dict[int, list[str]] = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tt":
            names.setdefault(int(parts[0], 16), []).append(parts[2])
    addrs = sorted(a for a in names if a >= 0xFFFFFFFF80000000)
    rng = random.Random(3)
    for i in rng.sample([i for i in range(len(addrs) - 1) if len(names[addrs[i]]) == 1], 300):
        off = rng.randrange(addrs[i + 1] - addrs[i])
        assert str(pack.symbols.lookup(addrs[i] + off)) == \
            f"{names[addrs[i]][0]}+{off:#x}/{addrs[i + 1] - addrs[i]:#x}"
    if not os.access(_DRGN, os.X_OK):
        return
    want = json.loads(subprocess.run([str(_DRGN), "-c", _DRGN_SCRIPT, str(vmlinux), *_MEMBERS],
                                     capture_output=True, text=True, check=True).stdout)
    for spec, offset in want.items():
        struct_name, member = spec.split(":")
        assert pack.member_offset(struct_name, member) == offset, spec
