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
import compileall
import json
import os
import platform
import re
import resource
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

_PACKAGES = ("vmcore", "signature", "symbol_cache", "foundation", "crashfleet", "ingest",
             "store", "analyzer", "agent", "web", "bench")
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


def _command(dump: Path, cache: Path) -> list[str]:
    """``crashfleet analyze DUMP`` as a user runs it, with ``cache`` as the symbol cache and
    no symbol source (a warm pack in it, or nothing: the dump's own symbols)."""
    return ["env", f"CRASHFLEET_SYMBOLS_CACHE_DIR={cache}", "CRASHFLEET_SYMBOLS_SOURCES=",
            "DEBUGINFOD_URLS=", str(ROOT / ".venv" / "bin" / "crashfleet"), "analyze",
            str(dump)]


def _cpu(cmd: list[str], repeat: int) -> float:
    """Best CPU seconds (user + system) of ``cmd`` over ``repeat`` runs: on a machine shared
    with other work, wall times move with the load, CPU times much less."""
    best = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


def _warm_cache(tmp: Path, pack: Path, build_id: str) -> Path:
    """A symbol cache directory whose disk tier holds ``pack``."""
    cache = tmp / f"cache-{build_id}"
    (cache / "packs").mkdir(parents=True, exist_ok=True)
    target = cache / "packs" / f"{build_id}.pack"
    if not target.exists():
        target.symlink_to(pack)
    return cache


def measure(case: str, dump: Path, man: dict, pack: Path, repeat: int, heavy: bool) -> dict:
    row: dict = {"case": case, "format": man.get("format")}
    tmp = pack.parent
    warm = _command(dump, _warm_cache(tmp, pack, man["build_id"]))
    row["cli_s"], row["cli_rss"], _ = _best(warm, repeat)
    row["cli_cpu"] = _cpu(warm, repeat)
    (tmp / "empty-cache").mkdir(exist_ok=True)
    cold = _command(dump, tmp / "empty-cache")
    row["nosym_cli_s"], row["nosym_cli_rss"], _ = _best(cold, repeat)
    row["nosym_cli_cpu"] = _cpu(cold, repeat)
    runs = []
    for _ in range(repeat):
        res = subprocess.run([PY, "-m", "bench.analyze.inproc", str(dump), str(pack)],
                             capture_output=True, cwd=ROOT, check=True)
        runs.append(json.loads(res.stdout))
    row["analyze_s"] = min(r["analyze_s"] for r in runs)
    row["open_s"] = min(r["open_s"] for r in runs)
    row["analyze_cpu"] = min(r["analyze_cpu"] for r in runs)
    row["open_cpu"] = min(r["open_cpu"] for r in runs)
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
            cmd = [str(drgn), "-q", "-c", str(dump), "-s", str(vmlinux), "-e", _DRGN]
            row["drgn_s"], row["drgn_rss"], rc = _best(cmd, 1)
            row["drgn_cpu"] = _cpu(cmd, 1)
            if rc != 0:
                row["drgn_failed"] = rc
    return row


def _measure_nosym(row: dict, dump: Path, repeat: int, heavy: bool) -> None:
    """The analysis with no symbols at all, and drgn with no debuginfo."""
    cmd = [PY, "-m", "bench.analyze.inproc", str(dump), "-"]
    runs = [json.loads(subprocess.run(cmd, capture_output=True, cwd=ROOT, check=True).stdout)
            for _ in range(repeat)]
    row["nosym_s"] = min(r["analyze_s"] for r in runs)
    row["nosym_cpu"] = min(r["analyze_cpu"] for r in runs)
    row["nosym_frames"] = runs[-1]["frames"]
    row["nosym_source"] = runs[-1]["symbols"]
    row["nosym_why"] = "; ".join(runs[-1].get("symbol_notes", []))
    row["nosym_proc_s"], row["nosym_rss"], _ = _best(cmd, repeat)
    drgn = TOOLS / "drgn"
    if heavy and drgn.exists():
        row["drgn_nosym_s"], row["drgn_nosym_rss"], rc = _best(
            [str(drgn), "-q", "-c", str(dump), "--no-default-symbols", "-e", _DRGN], 1)
        if rc != 0:
            row["drgn_nosym_failed"] = rc


def _why(notes: str) -> str:
    """Why a dump was analyzed from its log only, from the report's ``symbols:`` notes."""
    if "before v6.0" in notes:
        return "no kallsyms export before v6.0"
    m = re.search(r"none from the dump \((.*?)\)(?:;|$)", notes)
    return (m.group(1) if m else notes or "unknown").replace("|", "/")[:120]


def nosym_table(rows: list[dict]) -> str:
    head = ("| case | no symbols (in-process) | whole process | no symbols / warm pack "
            "(in-process) | no symbols / warm pack incl. pack open | `crashfleet analyze`, "
            "no symbols | drgn, no debuginfo |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        if not r.get("nosym_frames"):
            why = _why(r.get("nosym_why", ""))
            lines.append(f"| {r['case']} | log only ({why}) "
                         f"| {_ms(r.get('nosym_proc_s'))}, {_mb(r.get('nosym_rss'))} "
                         f"| - | - | {_ms(r.get('nosym_cli_s'))} | - |")
            continue
        drgn = "fails (no types without debuginfo)" if r.get("drgn_nosym_failed") else \
            f"{_ms(r.get('drgn_nosym_s'))}, {_mb(r.get('drgn_nosym_rss'))}"
        lines.append(
            f"| {r['case']} | {_ms(r['nosym_s'])} ({r['nosym_frames']} frames) | "
            f"{_ms(r['nosym_proc_s'])}, {_mb(r['nosym_rss'])} | "
            f"{_ratio(r['nosym_s'], r['analyze_s'])} | "
            f"{_ratio(r['nosym_s'], r['analyze_s'] + r['open_s'])} | "
            f"{_ms(r.get('nosym_cli_s'))}, {_mb(r.get('nosym_cli_rss'))} | {drgn} |")
    return head + "\n".join(lines) + "\n"


def table(rows: list[dict]) -> str:
    head = ("| case | format | analyze (in-process, warm pack) | whole process | "
            "`crashfleet analyze` (warm pack in the cache) | crash `bt`+`log`+`mod` | "
            "drgn stack + log | crash / command | drgn / command |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        drgn = "failed" if r.get("drgn_failed") else \
            f"{_ms(r.get('drgn_s'))}, {_mb(r.get('drgn_rss'))}"
        lines.append(
            f"| {r['case']} | {r['format']} | {_ms(r['analyze_s'])} ({r['frames']} frames) | "
            f"{_ms(r['proc_s'])}, {_mb(r['rss'])} | {_ms(r['cli_s'])}, {_mb(r['cli_rss'])} | "
            f"{_ms(r.get('crash_s'))}, {_mb(r.get('crash_rss'))} | {drgn} | "
            f"{_ratio(r.get('crash_s'), r['cli_s'])} | "
            f"{_ratio(None if r.get('drgn_failed') else r.get('drgn_s'), r['cli_s'])} |")
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
    def med(key: str) -> float | None:
        return median_of(rows, key)

    def med_ratio(a: str) -> str:
        return median_ratio(rows, a, "cli_s", skip=lambda r: bool(r.get(f"{a[:-2]}_failed")))

    deep = [r for r in rows if r.get("nosym_frames")]
    for r in deep:
        r["with_open_s"] = r["analyze_s"] + r["open_s"]
        r["with_open_cpu"] = r["analyze_cpu"] + r["open_cpu"]
    rss = max((r["rss"] for r in rows), default=0)
    nosym_rss = max((r.get("nosym_rss", 0) for r in rows), default=0)
    return (f"Median times: analysis in-process {_ms(med('analyze_s'))}, pack open "
            f"{_ms(med('open_s'))}, whole process {_ms(med('proc_s'))}, `crashfleet analyze` "
            f"{_ms(med('cli_s'))}, crash {_ms(med('crash_s'))}, drgn {_ms(med('drgn_s'))}. "
            f"Median ratios: crash / `crashfleet analyze` {med_ratio('crash_s')} (target ≥ "
            f"10x); drgn / `crashfleet analyze` {med_ratio('drgn_s')} (target ≥ 2x); in CPU time "
            f"(user + system, less moved by other work on the machine) drgn / `crashfleet "
            f"analyze` {median_ratio(rows, 'drgn_cpu', 'cli_cpu')}, no symbols / warm pack "
            f"{median_ratio(rows, 'nosym_cli_cpu', 'cli_cpu')}. Peak "
            f"RSS of the analysis process {_mb(rss)} (target ≤ 100 MB).\n\n"
            f"No symbols (the {len(deep)} dumps analyzed from their own symbols): median analysis "
            f"in-process {_ms(median_of(deep, 'nosym_s'))}; no symbols / warm pack "
            f"{median_ratio(deep, 'nosym_s', 'analyze_s')} (target ≤ 2x), no symbols / "
            f"(warm pack + pack open) {median_ratio(deep, 'nosym_s', 'with_open_s')}; in CPU "
            f"time {median_ratio(deep, 'nosym_cpu', 'analyze_cpu')} and "
            f"{median_ratio(deep, 'nosym_cpu', 'with_open_cpu')}; "
            f"`crashfleet analyze` with no symbols {_ms(median_of(deep, 'nosym_cli_s'))} vs "
            f"{_ms(median_of(deep, 'cli_s'))} with a warm pack; peak RSS with no symbols "
            f"{_mb(nosym_rss)} (target ≤ 100 MB).{_over(deep)}\n")


def _over(deep: list[dict]) -> str:
    """The dumps whose no-symbols analysis takes more than twice the warm-pack one."""
    over = [r for r in deep if r["nosym_s"] > 2 * r["analyze_s"]]
    if not over:
        return ""
    text = ", ".join(f"{r['case']} {_ratio(r['nosym_s'], r['analyze_s'])}" for r in over)
    why = (" (Debian's arm64 kernels are built without CONFIG_KALLSYMS_ALL: kallsyms names "
           "functions only, so the data symbols are searched for in the export table, the "
           "whole BTF and the vmalloc areas; docs/decoder.md)"
           if all(r["case"].startswith("arm64") for r in over) else "")
    return f" Over 2x: {text}{why}."


def write_docs(text: str) -> None:
    write_section("Analyze", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="store_true", help="include the generated corpus")
    p.add_argument("--repeat", type=int, default=3, help="runs of crashfleet per case")
    p.add_argument("--heavy", type=int, default=6, help="cases that also run crash and drgn")
    p.add_argument("--cases", metavar="REGEX", help="only the cases whose name matches")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--rows", metavar="FILE", type=Path,
                   help="render the rows a run printed (JSON lines on stderr) instead of "
                        "measuring")
    args = p.parse_args()
    if args.rows:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines()
                if line.startswith("{")]
        text = render(rows)
        print(text)
        if args.write_docs:
            write_docs(text)
        return
    # An installed crashfleet has its bytecode (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE would compile every module on every start (~100 ms of the
    # command's CPU), which is not what a user pays.
    for pkg in _PACKAGES:
        compileall.compile_dir(str(ROOT / pkg), quiet=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arches: set[str] = set()
        cases = [c for c in _cases(args.corpus)
                 if args.cases is None or re.search(args.cases, c[0])]
        for i, (case, dump, man) in enumerate(cases):
            pack = _pack_file(man["kernel_release"], Path(tmp))
            if pack is None:
                continue
            arch = man.get("arch", "x86_64")  # each architecture's first case is heavy too
            rows.append(measure(case, dump, man, pack, args.repeat,
                                i < args.heavy or arch not in arches))
            arches.add(arch)
            print(json.dumps(rows[-1]), file=sys.stderr)
    text = render(rows)
    print(text)
    if args.write_docs:
        write_docs(text)


def render(rows: list[dict]) -> str:
    """The docs section for measured ``rows`` (one per dump)."""
    return (f"Measured by `python -m bench.analyze.run` on {time.strftime('%Y-%m-%d')} "
            f"({os.cpu_count()} CPUs, {platform.release()}, {len(rows)} dumps). "
            "crashfleet: the full analysis (log, oops, crashed task, ORC unwind, modules, "
            "findings) with a warm pack, best of several runs; the whole process includes the "
            "interpreter, imports and reading the pack file. crash (`bt`, `log`, `mod`) and drgn "
            "(crashed thread's stack trace, log): one run each on the first cases, loading the "
            "debug vmlinux. RSS is each process's peak.\n\n" + summary(rows) + "\n" + table(rows)
            + "\nWith no symbols at all (no pack, no vmlinux: kallsyms, BTF and ORC from the "
            "dump; target: at most 2x the warm-pack analysis, at most 100 MB peak RSS). crash "
            "cannot open a dump without a vmlinux.\n\n" + nosym_table(rows))


if __name__ == "__main__":
    main()
