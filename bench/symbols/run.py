"""Symbol-pack benchmark: ``python -m bench.symbols.run [--write-docs]``.

On the Debian 6.1 cloud debug vmlinux (fetched by the fixture factory into the cache) it
measures, in one run:

- cold build: vmlinux → encoded pack (symbols, ORC, BTF struct layouts, line index), best and
  median of 3, file already in the page cache;
- warm open: read the pack from the disk tier and decode it (checksum included), best and
  median of 20; then the first symbol, ORC and file:line lookups (each expands its compressed
  sections once);
- the whole ``crashfleet symbols lookup`` command on a warm disk tier;
- ``crash`` start-up (``crash -s vmlinux dump`` then ``quit``) on a dump of that kernel, and
  drgn loading the vmlinux's debug info for the same dump (``load_debug_info`` plus one type and
  one symbol lookup), one run each;
- pack size against vmlinux size.

With ``--write-docs`` the Markdown goes into the "Symbols" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.docs import write_section
from bench.fmt import ms as _ms

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
RELEASE = "6.1.0-56-cloud-amd64"
_DRGN = CACHE / "tools" / "drgn-venv" / "bin" / "python"
_CRASH = CACHE / "tools" / "bin" / "crash"
_DRGN_LOAD = """
import sys, time, drgn
t = time.perf_counter()
prog = drgn.Program()
prog.set_core_dump(sys.argv[2])
prog.load_debug_info([sys.argv[1]])
prog.type("struct task_struct")
prog.symbol("kthread")
print(time.perf_counter() - t)
"""


def _dump_of(build_id: str) -> Path | None:
    for manifest in sorted(CACHE.glob("fixtures/*/manifest.json")):
        doc = json.loads(manifest.read_text())
        dump = manifest.parent / str(doc.get("dump", ""))
        if doc.get("build_id") == build_id and doc.get("format") == "kdump" and dump.is_file():
            return dump
    return None


def measure() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from symbol_cache import build_pack, decode_pack, encode_pack
    from symbol_cache.cache import SymbolCache
    from symbol_cache.metrics import SymbolMetrics
    from symbol_cache.tiers import DiskTier

    vmlinux = (CACHE / "kernels" / RELEASE / "vmlinux").resolve()
    if not vmlinux.is_file():
        subprocess.run(["bash", str(ROOT / "tests/fixtures/factory/fetch-kernels.sh"), RELEASE],
                       check=True)
    res: dict[str, Any] = {"vmlinux_bytes": vmlinux.stat().st_size}
    builds = []
    data = b""
    for _ in range(3):
        t = time.perf_counter()
        data = encode_pack(build_pack(vmlinux))
        builds.append(time.perf_counter() - t)
    res["build_s"] = builds
    res["pack_bytes"] = len(data)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SymbolCache(sources=[], disk=DiskTier(Path(tmp) / "packs", 1 << 30),
                            metrics=SymbolMetrics(CollectorRegistry()))
        pack = cache.import_vmlinux(vmlinux)
        opens = []
        for _ in range(20):
            t = time.perf_counter()
            raw = cache.disk.get(pack.build_id)
            assert raw is not None
            warm = decode_pack(raw, expect_build_id=pack.build_id)
            opens.append(time.perf_counter() - t)
        kthread = pack.symbols.address_of("kthread") or 0  # the built copy: warm stays cold
        t = time.perf_counter()
        warm.symbols.lookup(kthread + 0xDA)
        res["first_lookup_s"] = time.perf_counter() - t
        t = time.perf_counter()
        warm.orc.lookup(kthread + 0xDA)
        res["first_orc_s"] = time.perf_counter() - t
        t = time.perf_counter()
        warm.line_for(kthread + 0xDA)
        res["first_line_s"] = time.perf_counter() - t
        res["open_s"] = opens
        env = dict(os.environ, CRASHFLEET_SYMBOLS_CACHE_DIR=tmp,
                   CRASHFLEET_SYMBOLS_SOURCES="dir", CRASHFLEET_SYMBOLS_DEBUG_DIRS=tmp)
        t = time.perf_counter()
        subprocess.run([str(ROOT / ".venv/bin/crashfleet"), "--log-level", "error", "symbols",
                        "lookup", pack.build_id, f"{kthread + 0xDA:x}"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        res["cli_s"] = time.perf_counter() - t
        build_id = pack.build_id
    dump = _dump_of(build_id)
    res["dump"] = dump.parent.name if dump else None
    if dump and os.access(_CRASH, os.X_OK):
        t = time.perf_counter()
        subprocess.run([str(_CRASH), "-s", str(vmlinux), str(dump)], input=b"quit\n",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res["crash_s"] = time.perf_counter() - t
    if dump and os.access(_DRGN, os.X_OK):
        out = subprocess.run([str(_DRGN), "-c", _DRGN_LOAD, str(vmlinux), str(dump)],
                             capture_output=True, text=True)
        if out.returncode == 0:
            res["drgn_s"] = float(out.stdout.strip().splitlines()[-1])
    return res


def markdown(res: dict[str, Any]) -> str:
    builds, opens = res["build_s"], res["open_s"]
    vml, pack = res["vmlinux_bytes"], res["pack_bytes"]
    crash = res.get("crash_s")
    drgn = res.get("drgn_s")
    rows = [
        ("cold pack build (vmlinux → pack)", f"{_ms(min(builds))} best, "
         f"{_ms(statistics.median(builds))} median of 3", "≤ 30 s"),
        ("warm open (disk tier read + verify + decode)", f"{_ms(min(opens))} best, "
         f"{_ms(statistics.median(opens))} median of 20", "≤ 50 ms"),
        ("first symbol lookup after open", _ms(res["first_lookup_s"]), ""),
        ("first ORC lookup after open", _ms(res["first_orc_s"]), ""),
        ("first file:line lookup after open", _ms(res["first_line_s"]), ""),
        ("`crashfleet symbols lookup` (whole command)", _ms(res["cli_s"]), ""),
        ("pack size", f"{pack / 1e6:.1f} MB = {100 * pack / vml:.2f}% of the "
         f"{vml / 1e6:.0f} MB vmlinux", "≤ 5%"),
        ("`crash -s vmlinux dump` start-up", _ms(crash) if crash else "n/a", ""),
        ("drgn `load_debug_info` + 1 type + 1 symbol", _ms(drgn) if drgn else "n/a", ""),
    ]
    lines = [
        f"Measured by `python -m bench.symbols.run` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} CPUs, {os.uname().release}) on the Debian {RELEASE} debug vmlinux; "
        f"crash and drgn on dump `{res.get('dump')}`, one run each. Files in the page cache.",
        "",
        "| what | result | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    text = markdown(measure())
    print(text)
    if args.write_docs:
        write_section("Symbols", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
