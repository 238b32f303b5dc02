"""Decode benchmark: ``python -m bench.decode.run [--crash N] [--write-docs]``.

For each real fixture (committed ones, plus the generated corpus with ``--corpus``) it measures,
in the same run, wall time and peak RSS of:

- ``decode``: crashfleet's log + oops decode timed in-process (imports excluded);
- ``cli``: the whole ``crashfleet analyze --log DUMP`` command;
- ``makedumpfile --dump-dmesg`` (kdump and ELF dumps; it cannot read flattened input, so each
  flattened fixture is also measured as ``makedumpfile -R`` rebuilds it, a "(-R)" row, which
  every tool reads);
- ``crash`` (``log``) and drgn (``get_dmesg``), which load the debug vmlinux, on the first
  ``--crash`` cases only (they take seconds each);
- the floor under any Python command, once per run: the bare interpreter (``python -I -S -c
  pass``), the venv's interpreter with its site (``python -c pass``), and the installed
  ``crashfleet`` console script with the import of crashfleet taken out (the installer's own
  wrapper, which imports ``re``). ``analyze --log`` minus that last one is what crashfleet's
  code costs the command.

The project's bytecode is compiled first, as pip does when it installs a package: a checkout
run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module on every run.
Peak RSS comes from GNU time of each child. Results go to stdout as a Markdown table and, with
``--write-docs``, into the "Decode" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.docs import write_section
from bench.fmt import mb as _mb
from bench.fmt import median_of, median_ratio
from bench.fmt import ms as _ms
from bench.fmt import ratio as _ratio

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CRASHFLEET_CACHE", Path.home() / ".cache" / "crashfleet"))
TOOLS = CACHE / "tools" / "bin"
PY = str(ROOT / ".venv" / "bin" / "python")


def _wall(cmd: list[str], stdin: bytes | None) -> tuple[float, int]:
    with tempfile.TemporaryFile() as fin:
        fin.write(stdin or b"")
        fin.seek(0)
        t = time.perf_counter()
        res = subprocess.run(cmd, stdin=fin, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        return time.perf_counter() - t, res.returncode


def _rss(cmd: list[str], stdin: bytes | None) -> int:
    """Peak RSS in KiB from GNU time (``%M``): ``wait4`` from Python would report the
    interpreter's own pages for a child started by vfork/posix_spawn."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rss"
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(out), *cmd], input=stdin,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = out.read_text().strip().splitlines() if out.exists() else []
    return int(text[-1]) if text and text[-1].isdigit() else 0


def _run(cmd: list[str], stdin: bytes | None = None) -> tuple[float, int, int]:
    """Wall seconds (a plain run), peak RSS KiB (a run under GNU time), exit status."""
    wall, rc = _wall(cmd, stdin)
    return wall, _rss(cmd, stdin), rc


def _best(cmd: list[str], repeat: int, stdin: bytes | None = None) -> tuple[float, int, int]:
    runs = [_wall(cmd, stdin) for _ in range(repeat)]
    return min(r[0] for r in runs), _rss(cmd, stdin), runs[-1][1]


def floor(repeat: int) -> dict[str, float]:
    """Best wall times of what every Python command pays before crashfleet's code runs."""
    out = {"bare": _best([PY, "-I", "-S", "-c", "pass"], repeat)[0],
           "site": _best([PY, "-c", "pass"], repeat)[0]}
    script = ROOT / ".venv" / "bin" / "crashfleet"
    text = script.read_text() if script.exists() else ""
    if "from crashfleet.cli import main" in text:
        with tempfile.TemporaryDirectory() as tmp:
            empty = Path(tmp) / "crashfleet"
            # The same wrapper and interpreter, with a main that does nothing.
            empty.write_text(text.replace("from crashfleet.cli import main", "main = int"))
            out["wrapper"] = _best([PY, str(empty)], repeat)[0]
    return out


def _cases(corpus: bool) -> list[tuple[str, Path, dict]]:
    roots = [ROOT / "tests" / "fixtures" / "dumps"] + ([CACHE / "fixtures"] if corpus else [])
    out = {}
    for root in roots:
        for m in sorted(root.glob("*/manifest.json")):
            man = json.loads(m.read_text())
            dump = m.parent / man["dump"]
            if not dump.exists():
                # Committed oracles only: the generated corpus may hold the case (from its own
                # boot: its own manifest names and describes the file).
                own = CACHE / "fixtures" / m.parent.name / "manifest.json"
                if not own.exists():
                    continue
                man = json.loads(own.read_text())
                dump = own.parent / man["dump"]
            if dump.exists() and m.parent.name not in out:
                out[m.parent.name] = (m.parent.name, dump, man)
    return list(out.values())


def _rearranged(case: str, dump: Path) -> Path | None:
    """The flattened ``dump`` as ``makedumpfile -R`` turns it into a kdump-compressed file
    (cached); None without makedumpfile."""
    mkd = TOOLS / "makedumpfile"
    if not mkd.exists():
        return None
    out = CACHE / "bench" / "rearranged" / f"{case}-{dump.stat().st_size}.kdump"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with dump.open("rb") as fin:
            subprocess.run([str(mkd), "-R", str(tmp)], stdin=fin, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tmp.rename(out)
    return out


def _cli_cmd(dump: Path) -> list[str]:
    probe = subprocess.run([str(ROOT / ".venv" / "bin" / "crashfleet"), "analyze", "--log",
                            str(dump)], capture_output=True)
    if probe.returncode == 0:
        return [str(ROOT / ".venv" / "bin" / "crashfleet"), "analyze", "--log", str(dump)]
    # crashfleet's top-level parser abbreviates --log to --log-level/--log-format (ambiguous)
    # until it is built with allow_abbrev=False; the same handler, without the shell:
    return [PY, "-m", "crashfleet.commands.analyze", str(dump), "--log"]


def measure(case: str, dump: Path, man: dict, repeat: int, heavy: bool) -> dict:
    row: dict = {"case": case, "format": man.get("format"), "size": dump.stat().st_size}
    res = subprocess.run([PY, "-m", "bench.decode.inproc", str(dump)], capture_output=True,
                         cwd=ROOT, check=True)
    inproc = json.loads(res.stdout)
    row["decode_s"], row["decode_rss"] = inproc["decode_s"], inproc["maxrss_kib"]
    cli = _cli_cmd(dump)
    row["cli_s"], row["cli_rss"], _ = _best(cli, repeat)
    row["cli_cmd"] = " ".join(Path(c).name if "/" in c else c for c in cli[:-2]) \
        if cli[1] == "-m" else "crashfleet analyze --log"
    arm64 = man.get("arch") == "arm64"
    # arm64 dumps: makedumpfile 1.7.6 built natively for arm64 dumps when the factory made it
    # (factory/makedumpfile-xarm64.sh), else trixie's arm64 binary under qemu-user
    # (oracle-tools-arm64.sh; its times include the emulation); no crash (x86_64-only build)
    mkd = TOOLS / ("makedumpfile" if not arm64 else "makedumpfile-xarm64"
                   if (TOOLS / "makedumpfile-xarm64").exists() else "makedumpfile-arm64")
    if mkd.exists() and man.get("format") in ("kdump", "elf"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "dmesg"
            times, rss, rc = [], 0, 0
            for _ in range(repeat):
                out.unlink(missing_ok=True)
                w, r, rc = _run([str(mkd), "--dump-dmesg", str(dump), str(out)])
                times.append(w)
                rss = max(rss, r)
                out.unlink(missing_ok=True)
            if rc == 0:
                row["mkd_s"], row["mkd_rss"] = min(times), rss
            else:
                row["mkd_failed"] = rc
    rel = man.get("kernel_release", "")
    vmlinux = (CACHE / "kernels" / rel / "vmlinux")
    if heavy and vmlinux.exists():
        crash = TOOLS / "crash"
        if crash.exists() and not arm64:
            row["crash_s"], row["crash_rss"], _ = _best(
                [str(crash), "-s", str(vmlinux.resolve()), str(dump)], 1, b"log\nquit\n")
        drgn = TOOLS / "drgn"
        if drgn.exists():
            script = ("import sys\nfrom drgn.helpers.linux.printk import get_dmesg\n"
                      "sys.stdout.buffer.write(get_dmesg(prog))")
            row["drgn_s"], row["drgn_rss"], _ = _best(
                [str(drgn), "-q", "-c", str(dump), "-s", str(vmlinux.resolve()), "-e", script], 1)
    return row


def table(rows: list[dict]) -> str:
    head = ("| case | format | decode (log+oops, in-process) | `analyze --log` | makedumpfile "
            "--dump-dmesg | crash `log` | drgn | decode / mkd | cli / mkd | crash / cli | "
            "drgn / cli |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['format']} | {_ms(r['decode_s'])}, {_mb(r['decode_rss'])} | "
            f"{_ms(r['cli_s'])}, {_mb(r['cli_rss'])} | "
            f"{_ms(r.get('mkd_s'))}, {_mb(r.get('mkd_rss'))} | "
            f"{_ms(r.get('crash_s'))}, {_mb(r.get('crash_rss'))} | "
            f"{_ms(r.get('drgn_s'))}, {_mb(r.get('drgn_rss'))} | "
            f"{_ratio(r['decode_s'], r.get('mkd_s'))} | {_ratio(r['cli_s'], r.get('mkd_s'))} | "
            f"{_ratio(r.get('crash_s'), r['cli_s'])} | {_ratio(r.get('drgn_s'), r['cli_s'])} |")
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict], base: dict[str, float]) -> str:
    """Medians of the per-dump ratios, each over the dumps where both tools ran, and the
    interpreter floor (``base``, from :func:`floor`) against makedumpfile."""

    def med(key: str) -> float | None:
        return median_of(rows, key)

    def med_ratio(a: str, b: str) -> str:
        return median_ratio(rows, a, b)

    rss = max((r["decode_rss"] for r in rows), default=0)
    crss = max((r["cli_rss"] for r in rows), default=0)
    return (
        f"Median times: decode {_ms(med('decode_s'))}, `analyze --log` {_ms(med('cli_s'))}, "
        f"makedumpfile {_ms(med('mkd_s'))}, crash `log` {_ms(med('crash_s'))}, drgn "
        f"{_ms(med('drgn_s'))}. Median ratios: decode / makedumpfile "
        f"{med_ratio('decode_s', 'mkd_s')}; `analyze --log` / makedumpfile "
        f"{med_ratio('cli_s', 'mkd_s')}; crash / `analyze --log` {med_ratio('crash_s', 'cli_s')}"
        f"; drgn / `analyze --log` {med_ratio('drgn_s', 'cli_s')}. Peak RSS: decode process "
        f"{_mb(rss)}, CLI {_mb(crss)} (makedumpfile ~3 MB, crash ~380 MB, drgn ~230 MB).\n"
        + _floor_text(rows, base))


def _floor_text(rows: list[dict], base: dict[str, float]) -> str:
    mkd = median_of(rows, "mkd_s")
    wrapper = base.get("wrapper")
    if not mkd or wrapper is None:
        return ""
    own = median_of([{"own": r["cli_s"] - wrapper} for r in rows], "own")
    return (
        f"\nFloor (what any Python command pays before crashfleet's code runs, same run): the "
        f"bare interpreter `python -I -S -c pass` {_ms(base['bare'])}, with the venv's site "
        f"{_ms(base['site'])}, the installed `crashfleet` console script with its crashfleet "
        f"import taken out {_ms(wrapper)} ({_ratio(wrapper, mkd)} makedumpfile's median "
        f"{_ms(mkd)}). crashfleet's own share of `analyze --log` (command minus that floor): "
        f"median {_ms(own)}.\n")


def write_docs(text: str) -> None:
    write_section("Decode", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="store_true", help="include the generated corpus")
    p.add_argument("--crash", type=int, default=2, help="cases to run crash and drgn on")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--limit", type=int, default=0, help="at most this many cases")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    cases = _cases(args.corpus)
    if args.limit:
        cases = cases[: args.limit]
    if not cases:
        sys.exit("no fixtures found")
    for case, dump, man in list(cases):
        if str(man.get("format", "")).endswith("flattened"):
            kdump = _rearranged(case, dump)
            if kdump is not None:
                cases.append((f"{case} (-R)", kdump, {**man, "format": "kdump"}))
    subprocess.run([PY, "-m", "compileall", "-q", *(str(ROOT / p) for p in (
        "vmcore", "foundation", "signature", "store", "ingest", "symbol_cache", "agent",
        "analyzer", "crashfleet"))], check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    base = floor(args.repeat * 4)
    rows: list[dict] = []
    arches: set[str] = set()
    for case, dump, man in cases:
        arch = man.get("arch", "x86_64")  # each architecture's first case is heavy too
        try:
            rows.append(measure(case, dump, man, args.repeat,
                                heavy=len(rows) < args.crash or arch not in arches))
            arches.add(arch)
        except (OSError, subprocess.CalledProcessError) as exc:  # corpus regenerated meanwhile
            print(f"skipped {case}: {exc}", file=sys.stderr)
            continue
        print(f"measured {case}", file=sys.stderr)
    machine = f"{os.cpu_count()} CPUs, {os.uname().release}"
    text = (
        f"Measured by `python -m bench.decode.run` on {time.strftime('%Y-%m-%d')} ({machine}). "
        "Times are the best of several runs (crash and drgn: one run, they load the whole "
        "debug vmlinux); RSS is each process's peak. `decode` is the log + oops decode timed "
        "inside one process after imports; `analyze --log` is the whole command including the "
        "Python interpreter's start-up. makedumpfile cannot read flattened input (it needs "
        "`makedumpfile -R` first: each flattened fixture also has a (-R) row, the file "
        "`makedumpfile -R` rebuilds, which every tool reads) and fails on QEMU's ELF layout "
        "(program headers after a section header): those cells are n/a.\n\n"
        + summary(rows, base) + "\n<details><summary>Every dump (" + str(len(rows))
        + " rows)</summary>\n\n" + table(rows) + "\n</details>\n")
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
