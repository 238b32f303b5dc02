from __future__ import annotations

import re
from importlib import resources

import pytest

from signature import (
    Finding,
    Frame,
    SignatureInput,
    compute_signature,
    load_patterns,
    normalize_function,
)
from signature.cluster import ClusterCandidate, choose_cluster


@pytest.mark.parametrize("name", ["skip_frames.txt", "prefix_frames.txt"])
def test_every_data_line_compiles(name: str) -> None:
    text = resources.files("signature").joinpath("data", name).read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines, f"{name} is empty"
    for line in lines:
        re.compile(line)
    assert len(load_patterns(name)) == len(lines)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("kthread+0x118/0x140", "kthread"),
     ("no_context.constprop.0+0x120/0x330", "no_context"),
     ("__die_body.cold+0x1a/0x1f", "__die_body"),
     ("foo.isra.0.cold", "foo"),
     ("bar.part.3+0x1/0x2", "bar"),
     ("__x64_sys_finit_module+0x18/0x20", "sys_finit_module"),
     ("__do_sys_finit_module", "sys_finit_module"),
     ("ksys_write", "sys_write"),
     ("nullring_poll", "nullring_poll")],
)
def test_normalize_function(raw: str, norm: str) -> None:
    assert normalize_function(raw) == norm


def _sig(cls: str = "page_fault", rip: Frame | None = None, frames: tuple[Frame, ...] = (),
         taint: str = "G", findings: tuple[Finding, ...] = ()) -> SignatureInput:
    return SignatureInput(panic_class=cls, rip=rip, frames=frames, taint_letters=taint,
                          findings=findings)


def test_crash_path_and_unreliable_frames_are_skipped_modules_kept() -> None:
    frames = (Frame("? __die_body.cold+0x1a/0x1f", None, False), Frame("oops_end"),
              Frame("page_fault_oops+0x1/0x2"), Frame("exc_page_fault"),
              Frame("asm_exc_page_fault"), Frame("nullring_init+0x10/0x20", "vendor_nullring"),
              Frame("do_one_initcall"), Frame("junk", None, False))
    sig = compute_signature(_sig(rip=Frame("nullring_poll+0x5/0x30", "vendor_nullring"),
                                 frames=frames, taint="GOE"))
    assert sig.frames == ("nullring_poll [vendor_nullring]", "nullring_init [vendor_nullring]",
                          "do_one_initcall")
    assert sig.text == ("page_fault | nullring_poll [vendor_nullring] | "
                        "nullring_init [vendor_nullring] | do_one_initcall [EO]")


def test_offsets_and_addresses_do_not_change_the_id() -> None:
    a = compute_signature(_sig(rip=Frame("f+0x10/0x40"), frames=(Frame("g+0x1/0x9"),)))
    b = compute_signature(_sig(rip=Frame("f.isra.0+0x22/0x50"), frames=(Frame("g+0x3/0x9"),)))
    assert a.id == b.id and a.text == b.text


@pytest.mark.parametrize(
    "change",
    [{"cls": "general_protection_fault"}, {"taint": "GP"},
     {"findings": (Finding("use-after-module-unload", "x"),)},
     {"frames": (Frame("h"),)}],
)
def test_key_parts_split_signatures(change: dict[str, object]) -> None:
    base = {"rip": Frame("f"), "frames": (Frame("g"),)}
    a = compute_signature(_sig(**base))  # type: ignore[arg-type]
    b = compute_signature(_sig(**{**base, **change}))  # type: ignore[arg-type]
    assert a.id != b.id


def test_prefix_frames_do_not_use_up_the_budget() -> None:
    frames = tuple(Frame(n) for n in ("memcpy_erms", "_raw_spin_lock", "a", "b", "c", "d", "e",
                                      "f"))
    sig = compute_signature(_sig(rip=Frame("memset"), frames=frames))
    assert sig.frames == ("memset", "memcpy_erms", "_raw_spin_lock", "a", "b", "c", "d", "e")


def test_no_frames_falls_back_to_the_rip_or_unknown() -> None:
    sig = compute_signature(_sig(rip=Frame(None), findings=(
        Finding("use-after-module-unload", "veeamsnap"),), taint="GOE"))
    assert sig.text == "page_fault: use-after-module-unload(veeamsnap) | ?? [EO]"
    assert compute_signature(_sig()).frames == ("??",)


def test_clusters_join_like_frames_not_different_ones() -> None:
    one = compute_signature(_sig(rip=Frame("bug_fn", "m"), frames=(
        Frame("caller", "m"), Frame("do_one_initcall"), Frame("do_init_module"),
        Frame("load_module"), Frame("__do_sys_finit_module"))))
    # Another kernel build: a different syscall path below the module's frames.
    other_build = compute_signature(_sig(rip=Frame("bug_fn", "m"), frames=(
        Frame("caller", "m"), Frame("do_one_initcall"), Frame("do_init_module"),
        Frame("idempotent_init_module"), Frame("__x64_sys_finit_module"))))
    different_bug = compute_signature(_sig(rip=Frame("other_fn", "m"), frames=(
        Frame("caller", "m"), Frame("do_one_initcall"), Frame("do_init_module"))))
    assert one.id != other_build.id
    cands = [ClusterCandidate("c1", one.frames)]
    assert choose_cluster(other_build, cands) == "c1"
    assert choose_cluster(different_bug, cands) is None
