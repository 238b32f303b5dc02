"""Provenance of the committed crash-dump fixtures (tests/fixtures/dumps).

Every case directory holds a manifest.json naming each file with its sha256 and size, and the
oracle outputs of real tools. These tests check the files against the manifest and re-run the
independent oracle, trixie's makedumpfile 1.7.6 --dump-dmesg, on every dump present, comparing
with the committed dmesg.txt byte for byte.

Cases whose dump is too big for the repository are committed without it ("dump_in_repo": false);
their dump is looked up in the regenerated corpus ($CRASHFLEET_CACHE/fixtures, `make fixtures`).
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures.identity import COMPRESSED_ORACLES, is_recorded_dump, oracle_exists, read_oracle

REPO = Path(__file__).resolve().parents[1]
DUMPS = REPO / "tests" / "fixtures" / "dumps"
FACTORY_DIR = REPO / "tests" / "fixtures" / "factory"
CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
CORPUS = CACHE / "fixtures"
MAKEDUMPFILE = CACHE / "tools" / "bin" / "makedumpfile"
# arm64 cases ("arch": "arm64"): trixie's arm64 makedumpfile under qemu-aarch64-static (the x86
# build reads x86_64 dumps only), and no crash oracle (see factory/arm64_case.py).
MAKEDUMPFILE_ARM64 = CACHE / "tools" / "bin" / "makedumpfile-arm64"

ORACLE_FILES = ("dmesg.txt", "crash-sys.txt", "crash-bt.txt", "crash-log.txt", "crash-mod.txt",
                "crash-ps.txt", "drgn-bt.txt")
MANIFEST_KEYS = ("kernel_release", "build_id", "scenario", "cluster", "format", "compression",
                 "dump", "panic_line", "crash_panic", "rip_symbol", "crashed_task", "taint_letters",
                 "last_unloaded", "loaded_modules", "bt_top_frames", "packages", "files")


def _cases():
    return sorted(p.parent for p in DUMPS.glob("*/manifest.json"))


CASES = _cases()
IDS = [c.name for c in CASES]


def _manifest(case):
    return json.loads((case / "manifest.json").read_text())


def _oracle_files(m):
    """The oracle files a case must carry: all of them, or what an arm64 case lists."""
    return tuple(m["oracles"].values()) if m.get("arch") == "arm64" else ORACLE_FILES


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumpfix():
    """The factory's dumpfix module (stdlib only): the ELF-header and phys_base rewrites."""
    spec = importlib.util.spec_from_file_location("crashfleet_fixture_dumpfix",
                                                  FACTORY_DIR / "dumpfix.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


def _dump_path(case, manifest):
    """The dump file: in the repository, else in this machine's corpus when that holds the
    recorded dump (a regenerated corpus holds other boots), else None."""
    p = case / manifest["dump"]
    if p.is_file():
        return p
    p = CORPUS / case.name / manifest["dump"]
    return p if is_recorded_dump(p, manifest) else None


@pytest.fixture(scope="session")
def makedumpfile_arm64():
    """The arm64 oracle (needs qemu-aarch64-static from Debian's qemu-user-static)."""
    script = FACTORY_DIR / "oracle-tools-arm64.sh"
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if res.returncode != 0 or not MAKEDUMPFILE_ARM64.exists():
        pytest.fail(f"could not install the arm64 makedumpfile with {script}: exit "
                    f"{res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return MAKEDUMPFILE_ARM64


@pytest.fixture(scope="session")
def makedumpfile():
    """Install the oracle tools into the cache (idempotent, fast when done)."""
    script = FACTORY_DIR / "oracle-tools.sh"
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if res.returncode != 0 or not MAKEDUMPFILE.exists():
        pytest.fail("could not install the oracle tools (trixie makedumpfile 1.7.6) with "
                    f"{script}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    ver = subprocess.run([str(MAKEDUMPFILE), "-v"], capture_output=True, text=True).stdout
    assert "1.7.6" in ver, ver
    return MAKEDUMPFILE


def test_corpus_is_committed():
    assert CASES, f"no manifest.json under {DUMPS}"


def test_committed_size_is_bounded():
    total = sum(p.stat().st_size for p in DUMPS.rglob("*") if p.is_file())
    assert total <= 30 * 10**6, f"committed fixtures are {total / 1e6:.1f} MB (limit 30 MB)"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_manifest_complete(case):
    m = _manifest(case)
    missing = [k for k in MANIFEST_KEYS if k not in m]
    assert not missing, f"{case.name}: manifest lacks {missing}"
    assert m["dump"] in m["files"], f"{case.name}: dump not in the file table"
    for name in _oracle_files(m):
        assert name in m["files"], f"{case.name}: oracle {name} not in the file table"
        assert oracle_exists(case / name), f"{case.name}: oracle {name} missing"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_committed_files_match_manifest(case):
    m = _manifest(case)
    for rel, want in m["files"].items():
        p = case / rel
        if rel == m["dump"] and not m.get("dump_in_repo", True):
            assert not p.exists() or _sha256(p) == want["sha256"]
            continue
        if rel in COMPRESSED_ORACLES:
            assert not p.exists(), f"{case.name}: {rel} is committed as {rel}.gz"
            data = read_oracle(p)
            assert len(data) == want["size"], f"{case.name}: {rel}.gz size differs"
            assert hashlib.sha256(data).hexdigest() == want["sha256"], \
                f"{case.name}: {rel}.gz sha256 differs"
            continue
        assert p.is_file(), f"{case.name}: {rel} missing"
        assert p.stat().st_size == want["size"], f"{case.name}: {rel} size differs"
        assert _sha256(p) == want["sha256"], f"{case.name}: {rel} sha256 differs"
    extra = {p.relative_to(case).as_posix() for p in case.rglob("*") if p.is_file()}
    extra -= set(m["files"]) | {f"{r}.gz" for r in COMPRESSED_ORACLES} | {"manifest.json"}
    assert not extra, f"{case.name}: files not in the manifest: {sorted(extra)}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dump_dmesg_matches_oracle(case, request, tmp_path):
    m = _manifest(case)
    dump = _dump_path(case, m)
    if dump is None:
        pytest.skip(f"{case.name}: dump not committed (size) and not in {CORPUS} as recorded "
                    "(`make fixtures` makes new boots)")
    makedumpfile = request.getfixturevalue(
        "makedumpfile_arm64" if m.get("arch") == "arm64" else "makedumpfile")
    want = m["files"][m["dump"]]
    assert _sha256(dump) == want["sha256"], f"{dump}: sha256 differs from the manifest"
    dumpfix = _dumpfix()
    src = dump
    if m["format"] == "kdump-flattened":
        src = tmp_path / "reassembled"
        with open(dump, "rb") as f:
            subprocess.run([str(makedumpfile), "-R", str(src)], stdin=f, check=True,
                           capture_output=True)
        dumpfix.fix_qemu_kdump_phys_base(src)  # QEMU's header; no-op for makedumpfile's own
    elif m["format"] == "elf":
        src = tmp_path / "fixed.elf"
        dumpfix.fix_qemu_elf(dump, src)
    out = tmp_path / "dmesg.txt"
    res = subprocess.run([str(makedumpfile), "--dump-dmesg", str(src), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"makedumpfile --dump-dmesg failed:\n{res.stdout}\n{res.stderr}"
    assert out.read_bytes() == read_oracle(case / "dmesg.txt")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_oracles_agree_with_manifest(case):
    """The manifest's expectations are visible in the oracle outputs they came from."""
    m = _manifest(case)
    dmesg = read_oracle(case / "dmesg.txt").decode(errors="replace")
    if m.get("arch") == "arm64":
        _arm64_oracles_agree(case, m, dmesg)
        return
    bt = (case / "crash-bt.txt").read_text(errors="replace")
    if m["panic_line"] is None:
        # the guest's kdump kernel took over at the oops: crash_kexec() runs before panic()
        assert "Kernel panic - not syncing" not in dmesg and m["crash_panic"]
    else:
        assert m["panic_line"] in dmesg
    assert m["kernel_release"] in (case / "crash-sys.txt").read_text()
    task = m["crashed_task"]
    assert task and f"PID: {task['pid']}" in bt and f'"{task["comm"]}"' in bt
    for frame in m["bt_top_frames"]:
        assert f" {frame} at " in bt
    if m["scenario"] == "uau":
        assert m["rip_symbol"] == "unresolved"
        assert m["last_unloaded"] == "vendordeferio"


def _arm64_oracles_agree(case, m, dmesg):
    """arm64 cases: the dmesg and drgn oracles (no crash) hold the manifest's expectations."""
    drgn = (case / "drgn-bt.txt").read_text(errors="replace")
    assert m["panic_line"] in dmesg
    assert m["kernel_release"] in dmesg
    task = m["crashed_task"]
    assert task and f"crashed thread: pid {task['pid']} comm {task['comm']} " in drgn
    for frame in m["bt_top_frames"]:
        assert f" {frame} (" in drgn or f" {frame}+" in drgn
    assert f"modules: {' '.join(m['loaded_modules'])}" in drgn
    if m["scenario"] == "uau":
        assert m["rip_symbol"] == "unresolved"
        assert m["last_unloaded"] == "vendordeferio"
