"""Time the decode itself (log + oops) in-process: ``python -m bench.decode.inproc DUMP``.

Prints one JSON line: best wall time of the decode in seconds over ``--repeat`` runs (imports
excluded, each run opens the dump afresh) and this process's peak RSS in KiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dump")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    from vmcore.formats import open_dump
    from vmcore.logread import read_log
    from vmcore.oops import parse_log
    from vmcore.printk import format_dmesg
    from vmcore.source import LocalFileSource

    best = float("inf")
    records = 0
    for _ in range(args.repeat):
        t = time.perf_counter()
        with LocalFileSource(args.dump) as src:
            _info, log = read_log(open_dump(src))
            format_dmesg(log.records)
            analysis = parse_log(log.text())
        best = min(best, time.perf_counter() - t)
        records = len(log.records)
    print(json.dumps({"decode_s": best, "maxrss_kib": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss, "records": records, "class": analysis.klass}))


if __name__ == "__main__":
    main()
