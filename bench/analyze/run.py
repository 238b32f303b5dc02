"""Full-analysis benchmark: ``python -m bench.analyze.run [--heavy N] [--write-docs]``.

For each real fixture it measures, in the same run, wall time and peak RSS of:

- ``analyze``: crashfleet's full analysis with a warm pack (log, oops, crashed task, ORC unwind,
  modules, findings), timed in-process after the pack is opened; and the whole process
  (interpreter start-up, imports, reading the pack from disk as the disk tier does);
- ``crash`` with ``bt``, ``log`` and ``mod`` on the same dump and debug vmlinux;
- drgn printing the crashed thread's stack trace and the log;
- "no symbols": the same analysis with no pack and no vmlinux, from the dump's own kallsyms,
  BTF and ORC (in-process and whole process), beside drgn given no debuginfo
  (``--no-default-symbols``); crash cannot open a dump without a vmlinux at all.

crash and drgn run on the first ``--heavy`` cases only (they load the whole debug vmlinux).
Results go to stdout as Markdown and, with ``--write-docs``, into the "Analyze" section of
``docs/benchmarks.md``. Targets (issue 6): ≥ 10x faster than crash, no slower than drgn, peak
RSS ≤ 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.decode.run import CACHE, PY, ROOT, TOOLS, _best, _cases
from bench.docs import write_section
from bench.fmt import mb as _mb
from bench.fmt import median_of, median_ratio
from bench.fmt import ms as _ms
from bench.fmt import ratio as _ratio

_DRGN = ("import sys\nfrom drgn.helpers.linux.printk import get_dmesg\n"
         "print(prog.crashed_thread().stack_trace())\n"
         "sys.stdout.buffer.write(get_dmesg(prog))")


def _pack_file(release: str, tmp: Path) -> Path | None:
    """The release's pack, built in a child process: building holds the vmlinux's tables in
    memory, and children spawned later would inherit this process's peak RSS."""
    path = tmp / f"{release}.pack"
    if not path.exists():
        vmlinux = CACHE / "kernels" / release / "vmlinux"
        if not vmlinux.exists():
            return None
        code = ("import sys\nfrom pathlib import Path\n"
                "from symbol_cache import build_pack, encode_pack\n"
                "Path(sys.argv[2]).write_bytes(encode_pack(build_pack(Path(sys.argv[1]), "
                "source='bench')))")
        subprocess.run([PY, "-c", code, str(vmlinux.resolve()), str(path)], cwd=ROOT,
                       check=True)
    return path


def measure(case: str, dump: Path, man: dict, pack: Path, repeat: int, heavy: bool) -> dict:
    row: dict = {"case": case, "format": man.get("format")}
    runs = []
    for _ in range(repeat):
        res = subprocess.run([PY, "-m", "bench.analyze.inproc", str(dump), str(pack)],
                             capture_output=True, cwd=ROOT, check=True)
        runs.append(json.loads(res.stdout))
    row["analyze_s"] = min(r["analyze_s"] for r in runs)
    row["open_s"] = min(r["open_s"] for r in runs)
    row["frames"] = runs[-1]["frames"]
    # peak RSS from GNU time: a child's ru_maxrss includes its spawner's pages
    row["proc_s"], row["rss"], _ = _best(
        [PY, "-m", "bench.analyze.inproc", str(dump), str(pack)], repeat)
    _measure_nosym(row, dump, repeat, heavy)
    vmlinux = (CACHE / "kernels" / man["kernel_release"] / "vmlinux").resolve()
    if heavy:
        crash = TOOLS / "crash"
        if crash.exists() and man.get("arch") != "arm64":  # the crash build reads x86_64 only
            row["crash_s"], row["crash_rss"], _ = _best(
                [str(crash), "-s", str(vmlinux), str(dump)], 1, b"bt\nlog\nmod\nquit\n")
        drgn = TOOLS / "drgn"
        if drgn.exists():
            row["drgn_s"], row["drgn_rss"], rc = _best(
                [str(drgn), "-q", "-c", str(dump), "-s", str(vmlinux), "-e", _DRGN], 1)
            if rc != 0:
                row["drgn_failed"] = rc
    return row


def _measure_nosym(row: dict, dump: Path, repeat: int, heavy: bool) -> None:
    """The analysis with no symbols at all, and drgn with no debuginfo."""
    cmd = [PY, "-m", "bench.analyze.inproc", str(dump), "-"]
    runs = [json.loads(subprocess.run(cmd, capture_output=True, cwd=ROOT, check=True).stdout)
            for _ in range(repeat)]
    row["nosym_s"] = min(r["analyze_s"] for r in runs)
    row["nosym_frames"] = runs[-1]["frames"]
    row["nosym_source"] = runs[-1]["symbols"]
    row["nosym_proc_s"], row["nosym_rss"], _ = _best(cmd, repeat)
    drgn = TOOLS / "drgn"
    if heavy and drgn.exists():
        row["drgn_nosym_s"], row["drgn_nosym_rss"], rc = _best(
            [str(drgn), "-q", "-c", str(dump), "--no-default-symbols", "-e", _DRGN], 1)
        if rc != 0:
            row["drgn_nosym_failed"] = rc


def nosym_table(rows: list[dict]) -> str:
    head = ("| case | no symbols (in-process) | whole process | no symbols / warm pack "
            "(in-process) | drgn, no debuginfo |\n|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        if not r.get("nosym_frames"):
            lines.append(f"| {r['case']} | log only (no kallsyms "
                         f"export) | {_ms(r.get('nosym_proc_s'))}, {_mb(r.get('nosym_rss'))} "
                         "| - | - |")
            continue
        drgn = "fails (no types without debuginfo)" if r.get("drgn_nosym_failed") else \
            f"{_ms(r.get('drgn_nosym_s'))}, {_mb(r.get('drgn_nosym_rss'))}"
        lines.append(
            f"| {r['case']} | {_ms(r['nosym_s'])} ({r['nosym_frames']} frames) | "
            f"{_ms(r['nosym_proc_s'])}, {_mb(r['nosym_rss'])} | "
            f"{_ratio(r['nosym_s'], r['analyze_s'])} | {drgn} |")
    return head + "\n".join(lines) + "\n"


def table(rows: list[dict]) -> str:
    head = ("| case | format | analyze (in-process, warm pack) | whole process | crash "
            "`bt`+`log`+`mod` | drgn stack + log | crash / process | drgn / process |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        drgn = "failed" if r.get("drgn_failed") else \
            f"{_ms(r.get('drgn_s'))}, {_mb(r.get('drgn_rss'))}"
        lines.append(
            f"| {r['case']} | {r['format']} | {_ms(r['analyze_s'])} ({r['frames']} frames) | "
            f"{_ms(r['proc_s'])}, {_mb(r['rss'])} | "
            f"{_ms(r.get('crash_s'))}, {_mb(r.get('crash_rss'))} | {drgn} | "
            f"{_ratio(r.get('crash_s'), r['proc_s'])} | "
            f"{_ratio(None if r.get('drgn_failed') else r.get('drgn_s'), r['proc_s'])} |")
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
    def med(key: str) -> float | None:
        return median_of(rows, key)

    def med_ratio(a: str) -> str:
        return median_ratio(rows, a, "proc_s", skip=lambda r: bool(r.get(f"{a[:-2]}_failed")))

    rss = max((r["rss"] for r in rows), default=0)
    return (f"Median times: analysis in-process {_ms(med('analyze_s'))}, pack open "
            f"{_ms(med('open_s'))}, whole process {_ms(med('proc_s'))}, crash "
            f"{_ms(med('crash_s'))}, drgn {_ms(med('drgn_s'))}. Median ratios: crash / "
            f"crashfleet {med_ratio('crash_s')} (target ≥ 10x); drgn / crashfleet "
            f"{med_ratio('drgn_s')} (target ≥ 1x). Peak RSS of the analysis process "
            f"{_mb(rss)} (target ≤ 100 MB).\n")


def write_docs(text: str) -> None:
    write_section("Analyze", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="store_true", help="include the generated corpus")
    p.add_argument("--repeat", type=int, default=3, help="runs of crashfleet per case")
    p.add_argument("--heavy", type=int, default=6, help="cases that also run crash and drgn")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arches: set[str] = set()
        for i, (case, dump, man) in enumerate(_cases(args.corpus)):
            pack = _pack_file(man["kernel_release"], Path(tmp))
            if pack is None:
                continue
            arch = man.get("arch", "x86_64")  # each architecture's first case is heavy too
            rows.append(measure(case, dump, man, pack, args.repeat,
                                i < args.heavy or arch not in arches))
            arches.add(arch)
            print(json.dumps(rows[-1]), file=sys.stderr)
    text = (f"Measured by `python -m bench.analyze.run` on {time.strftime('%Y-%m-%d')} "
            f"({os.cpu_count()} CPUs, {platform.release()}, {len(rows)} dumps). "
            "crashfleet: the full analysis (log, oops, crashed task, ORC unwind, modules, "
            "findings) with a warm pack, best of several runs; the whole process includes the "
            "interpreter, imports and reading the pack file. crash (`bt`, `log`, `mod`) and drgn "
            "(crashed thread's stack trace, log): one run each on the first cases, loading the "
            "debug vmlinux. RSS is each process's peak.\n\n" + summary(rows) + "\n" + table(rows)
            + "\nWith no symbols at all (no pack, no vmlinux: kallsyms, BTF and ORC from the "
            "dump; target: at most 2x the warm-pack analysis, at most 100 MB peak RSS). crash "
            "cannot open a dump without a vmlinux.\n\n" + nosym_table(rows))
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
