"""One full analysis with a warm pack, timed in-process: ``python -m bench.analyze.inproc DUMP
PACK``; ``PACK`` ``-`` analyzes with no symbols at all (the dump's own kallsyms, BTF and ORC).
Prints JSON: ``open_s`` (pack read + decode, the disk tier's cost), ``analyze_s`` (log,
oops, task, unwind, modules, findings), ``frames``, ``symbols`` (the report's source),
``maxrss_kib`` (peak RSS of the process); ``open_cpu``/``analyze_cpu`` the same in CPU
seconds."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from symbol_cache.pack import decode_pack
from vmcore.analyze import analyze
from vmcore.source import LocalFileSource


def main() -> None:
    dump, pack_path = sys.argv[1], Path(sys.argv[2])
    t0, c0 = time.perf_counter(), time.process_time()
    pack = decode_pack(pack_path.read_bytes()) if str(pack_path) != "-" else None
    t1, c1 = time.perf_counter(), time.process_time()
    with LocalFileSource(dump) as src:
        if pack is None:
            report = analyze(src, dump_symbols=True).report
        else:
            report = analyze(src, symbols=lambda _info: pack).report
    t2, c2 = time.perf_counter(), time.process_time()
    mem = report.memory
    print(json.dumps({"open_s": t1 - t0, "analyze_s": t2 - t1,
                      "open_cpu": c1 - c0, "analyze_cpu": c2 - c1,
                      "frames": len(mem.frames) if mem else 0,
                      "findings": [f.kind for f in report.findings],
                      "symbols": report.symbols,
                      "symbol_notes": [n for n in report.notes if n.startswith("symbols:")],
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
