"""``crashfleet analyze DUMP [--log | --json] [--vmlinux PATH | --symbols | --no-symbols]``:
decode a dump; with symbols (a pack, else the dump's own kallsyms/BTF/ORC) also read the
crashed task, its stack and the modules from memory. The summary's ``symbols:`` line names
the source used.

``DUMP`` is a path or an ``s3://bucket/key`` URI (the S3 adapter is imported only then, so a
local analysis starts fast). Exit codes: 0 ok, 1 the dump cannot be decoded, 3 the report is
partial.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crashfleet.cli import App
    from vmcore.analyze import PackProvider
    from vmcore.report import Report
    from vmcore.source import ByteSource

__all__ = ["register"]

EXIT_PARTIAL = 3


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` command."""
    p = sub.add_parser(
        "analyze", help="decode a dump: kernel log, oops, task, taint, modules",
        description="Decode a kdump-compressed, flattened or ELF dump without vmlinux.")
    p.add_argument("dump", metavar="DUMP", help="dump path or s3://bucket/key")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--log", action="store_true",
                     help="print the kernel log as makedumpfile --dump-dmesg does")
    out.add_argument("--json", action="store_true", help="print the versioned JSON report")
    p.add_argument("--flat-index", metavar="FILE",
                   help="stored offset index of a flattened dump (default: DUMP.flatindex "
                        "beside the dump, if present; skips the indexing pass)")
    p.add_argument("--write-flat-index", metavar="FILE",
                   help="index a flattened dump and write the index to FILE")
    sym = p.add_mutually_exclusive_group()
    sym.add_argument("--vmlinux", metavar="PATH",
                     help="debug vmlinux of the dump's kernel: read the crashed task, its "
                          "stack, modules and findings from memory")
    sym.add_argument("--symbols", action="store_true",
                     help="the same with the kernel's pack from the symbol cache in the "
                          "settings ([symbols])")
    sym.add_argument("--no-symbols", action="store_true",
                     help="the log only: no pack, no symbols from the dump (default: a pack "
                          "already cached, else one fetched from the configured sources "
                          "within symbols.fetch_timeout_s, else the dump's own kallsyms, BTF "
                          "and ORC)")
    p.add_argument("--header", action="store_true",
                   help="print only what the header blocks say (reads a few KiB)")
    p.set_defaults(func=_analyze, no_logging_setup=True)


def _sidecar_index(uri: str, app: App) -> bytes | None:
    """A stored flat index beside the dump (``DUMP.flatindex``), if any."""
    from vmcore.formats.flattened import INDEX_SUFFIX

    if uri.startswith("s3://"):
        src = _open(uri + INDEX_SUFFIX, app, must_exist=False)
        if src is None:
            return None
        return src.read(0, src.size)
    try:
        with open(uri + INDEX_SUFFIX, "rb") as f:
            return f.read()
    except OSError:
        return None


def _open(uri: str, app: App, must_exist: bool = True) -> ByteSource | None:
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket or not key:
            from foundation.errors import UsageError

            raise UsageError(f"expected s3://bucket/key, got {uri!r}")
        from ingest.s3 import S3ObjectStore
        from vmcore.source import ObjectStoreSource

        store = S3ObjectStore.from_settings(app.settings().s3, bucket=bucket)
        if not must_exist and store.head(key) is None:
            return None
        return ObjectStoreSource(store, key)
    from vmcore.source import LocalFileSource

    return LocalFileSource(uri)


def _analyze(args: argparse.Namespace, app: App) -> int:
    from vmcore.errors import AnalyzerError

    try:
        src = _open(args.dump, app)
    except OSError as exc:
        print(f"crashfleet: error: {exc}", file=sys.stderr)
        return 1
    assert src is not None
    try:
        index_bytes = None
        if args.flat_index:
            with open(args.flat_index, "rb") as f:
                index_bytes = f.read()
        elif src.read(0, 12) == b"makedumpfile":
            index_bytes = _sidecar_index(args.dump, app)
        return _run(args, src, index_bytes, app)
    except AnalyzerError as exc:
        from crashfleet.cli import EX_TEMPFAIL
        from foundation.errors import is_retryable
        from foundation.text import term_safe

        print(f"crashfleet: error: {term_safe(f'{args.dump}: {exc}')}", file=sys.stderr)
        return EX_TEMPFAIL if is_retryable(exc) else 1
    finally:
        close = getattr(src, "close", None)
        if close is not None:
            close()


def _pack_provider(args: argparse.Namespace, app: App | None) -> PackProvider | None:
    """How the kernel's symbol pack is found: ``--vmlinux``, ``--symbols`` (the symbol
    cache, fetching as long as it takes), else (no flag) :func:`_auto_provider`; None with
    ``--no-symbols``."""
    if getattr(args, "no_symbols", False):
        return None
    if getattr(args, "vmlinux", None):
        from pathlib import Path

        from symbol_cache import build_pack

        path = Path(args.vmlinux)
        return lambda _info: build_pack(path, source="file")
    if app is None:
        return None
    if getattr(args, "symbols", False):
        from crashfleet.wiring.symbols import open_cache, pack_provider

        return pack_provider(open_cache(app.settings()))
    return _auto_provider(app)


def _auto_provider(app: App) -> PackProvider:
    """A pack already in the local cache (opened with the pack reader alone), else, when a
    source is configured, one fetched within ``symbols.fetch_timeout_s``; else None (the
    analysis then reads the dump's own symbols)."""

    def get(info: Any) -> Any:
        import os
        from pathlib import Path

        from symbol_cache.warm import cached_pack
        from vmcore.symbols import is_plausible_build_id

        sym = app.settings().symbols
        bid = info.build_id if info.build_id and is_plausible_build_id(info.build_id) else None
        pack = cached_pack(Path(sym.cache_dir) / "packs", bid, info.osrelease)
        if pack is not None or not _sources_configured(sym, os.environ):
            return pack
        return _fetch(app, info, sym.fetch_timeout_s)

    return get


def _sources_configured(sym: Any, env: Any) -> bool:
    for name in sym.sources:
        if name == "debuginfod" and (sym.debuginfod_urls or env.get("DEBUGINFOD_URLS")):
            return True
        if name == "dir" and any(os.path.isdir(d) for d in sym.debug_dirs):
            return True
        if name == "deb" and sym.deb_dirs:
            return True
    return False


def _fetch(app: App, info: Any, timeout_s: float) -> Any:
    """The symbol cache's pack for ``info``, or TimeoutError after ``timeout_s`` (the fetch
    goes on in a daemon thread that the process does not wait for)."""
    import threading

    from crashfleet.wiring.symbols import open_cache, pack_provider

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["pack"] = pack_provider(open_cache(app.settings()))(info)
        except Exception as exc:  # reported to the caller below
            box["error"] = exc

    t = threading.Thread(target=run, name="symbols-fetch", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"no pack within symbols.fetch_timeout_s ({timeout_s:g} s)")
    if "error" in box:
        raise box["error"]
    return box["pack"]


def _run(args: argparse.Namespace, src: ByteSource, index_bytes: bytes | None,
         app: App | None = None) -> int:
    if args.write_flat_index:
        from vmcore.formats.flattened import build_index

        with open(args.write_flat_index, "wb") as f:
            f.write(build_index(src).to_bytes())
        return 0
    if args.header:
        import json
        from dataclasses import asdict

        from vmcore.analyze import read_header

        print(json.dumps(asdict(read_header(src)), indent=2))
        return 0
    index = None
    if index_bytes is not None:
        from vmcore.formats.flattened import FlatIndex

        index = FlatIndex.from_bytes(index_bytes)
    if args.log:
        from vmcore.formats import open_dump
        from vmcore.logread import read_log
        from vmcore.printk import format_dmesg

        _info, log = read_log(open_dump(src, index))
        dmesg = format_dmesg(log.records)
        if sys.stdout.isatty():
            # makedumpfile's format escapes every control byte but TAB, VT, FF and CR, and
            # every byte >= 0x80 (so no bidi control); on a terminal CR, VT and FF are escaped
            # too (a CR would let a line overwrite itself). A pipe gets makedumpfile's bytes.
            dmesg = dmesg.replace(b"\r", b"\\x0d").replace(b"\x0b", b"\\x0b") \
                .replace(b"\x0c", b"\\x0c")
        sys.stdout.buffer.write(dmesg)
        sys.stdout.flush()
        if log.notes:
            from foundation.text import term_safe

            for note in log.notes:
                print(f"crashfleet: warning: {term_safe(str(note))}", file=sys.stderr)
        return EXIT_PARTIAL if log.partial else 0
    from vmcore.analyze import analyze

    report = _titled(analyze(src, flat_index=index, symbols=_pack_provider(args, app),
                             dump_symbols=not getattr(args, "no_symbols", False)).report)
    if args.json:
        print(report.to_json())
    else:
        # Host text (kernel release, comm, symbols, the log's lines) is escaped here, at the
        # output boundary: no control, bidi or stray character reaches the terminal.
        from foundation.text import term_safe

        sys.stdout.write(term_safe(summary(report), keep_newlines=True))
    return EXIT_PARTIAL if report.partial else 0


def _titled(report: Report) -> Report:
    """``report`` with its crash title (the signature step's, as the analyzer stores it)."""
    import dataclasses

    from signature.inputs import report_title

    return dataclasses.replace(report, title=report_title(report).text)


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


# A summary row: label, value, and lines printed indented below it (a call trace).
_Row = tuple[str, str, list[str]]


def _row(label: str, value: Any, below: list[str] | None = None) -> _Row:
    return (label, str(value), below or [])


def _dump_rows(r: Report) -> list[_Row]:
    d = r.dump
    extra = ", ".join(x for x in (
        f"header v{d.header_version}" if d.header_version else "",
        f"dump level {d.dump_level}" if d.dump_level is not None else "",
        "INCOMPLETE" if d.incomplete else "") if x)
    rows = [_row("dump", f"{d.source} ({d.format}, {d.compression}, {_fmt_size(d.size)}"
                         f"{', ' + extra if extra else ''})")]
    k = r.kernel
    rows.append(_row("kernel", " ".join(x for x in (k.release, k.version) if x) or "?"))
    rows.append(_row("build-id", k.build_id or "?"))
    if r.crash_time:
        import time

        rows.append(_row("crash time", time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                     time.gmtime(r.crash_time))))
    return rows


def _crash_rows(r: Report) -> list[_Row]:
    rows = []
    p = r.panic
    if r.title is not None:
        rows.append(_row("title", r.title))
    if p.line is not None:
        rows.append(_row("panic", p.line))
    rows.append(_row("class", p.klass + (f" ({', '.join(p.qualifiers)})" if p.qualifiers
                                         else "")))
    if p.headline:
        rows.append(_row("oops", p.headline))
    if r.bug_location:
        rows.append(_row("location", r.bug_location))
    if r.fault and r.fault.error_code is not None:
        f = r.fault
        rows.append(_row("fault", f"{f.privilege} {f.access} in {f.mode} mode, error_code "
                                  f"{f.error_code:#06x} [{' '.join(f.error_flags) or '-'}]"
                                  f"{' - ' + f.reason if f.reason else ''}"))
    if r.rip:
        rows.append(_row("RIP", r.rip.text))
    return rows


def _task_rows(r: Report) -> list[_Row]:
    rows = []
    t = r.task
    if t.comm is not None or t.pid is not None:
        rows.append(_row("task", f"{t.comm} (pid {t.pid}) on CPU {t.cpu}"))
    if r.taint:
        meanings = "; ".join(f"{a}: {b}" for a, b in zip(r.taint.flags, r.taint.meanings,
                                                           strict=True))
        rows.append(_row("taint", f"{r.taint.letters} ({meanings})" if meanings
                         else "not tainted"))
    if r.modules:
        m = r.modules
        rows.append(_row("modules", " ".join(n + (f"({m.taints[n]})" if n in m.taints else "")
                                             for n in m.loaded) or "-"))
        if m.last_unloaded:
            rows.append(_row("last unloaded", m.last_unloaded + (
                f" ({m.last_unloaded_taints})" if m.last_unloaded_taints else "")))
    return rows


def _trace_rows(r: Report) -> list[_Row]:
    if not r.frames:
        return []
    below = []
    for fr in r.frames:
        mark = "  " if fr.reliable else "? "
        name = fr.function or (f"{fr.address:#x}" if fr.address is not None else "?")
        off = f"+{fr.offset:#x}/{fr.size:#x}" if fr.offset is not None else ""
        mod = f" [{fr.module}]" if fr.module else ""
        ctx = f"  <{fr.context}>" if fr.context and fr.context != "task" else ""
        below.append(f"  {mark}{name}{off}{mod}{ctx}")
    return [_row("call trace", "", below)]


def _symbols_rows(r: Report) -> list[_Row]:
    return [_row("symbols", r.symbols)]


def _memory_rows(r: Report) -> list[_Row]:
    mi = r.memory
    if mi is None:
        return []
    stack = []
    for mf in mi.frames:
        mark = "  " if mf.reliable else "? "
        name = mf.function or f"{mf.address:#x}"
        off = f"+{mf.offset:#x}/{mf.size:#x}" if mf.offset is not None else ""
        mod = f" [{mf.module}]" if mf.module else ""
        exc = "  [exception RIP]" if mf.exception else ""
        ctx = f"  <{mf.context}>" if mf.context != "task" else ""
        stack.append(f"  {mark}{name}{off}{mod}{exc}{ctx}")
    rows = [
        _row("memory", f"kernel {mi.build_id} (matched by {mi.matched_by}, KASLR offset "
                       f"{mi.kaslr_offset:#x})"),
        _row("crashed task", f"{mi.comm} (pid {mi.pid}, {mi.state}) on CPU {mi.cpu}"
                             + (f" at {mi.task_address:#x}" if mi.task_address else "")),
        _row("stack (memory)", "" if mi.unwind_complete else "(partial)", stack),
        _row("modules (memory)", " ".join(
            f"{m.name}@{m.base:#x}/{m.size}" + (f"({m.taints})" if m.taints else "")
            for m in mi.modules) or "-"),
    ]
    if mi.last_unloaded:
        rows.append(_row("last unloaded (memory)", mi.last_unloaded))
    return rows


def _finding_rows(r: Report) -> list[_Row]:
    return [_row("finding", f"{fd.kind}" + (f" [{fd.module}]" if fd.module else "")
                            + (" (from the log)" if fd.source == "log" else "")
                            + (f" at {fd.address:#x}" if fd.address is not None else "")
                            + (f" in {fd.thread}" if fd.thread else "")
                            + "".join(f"; {e}" for e in fd.evidence))
            for fd in r.findings]


def _footer_rows(r: Report) -> list[_Row]:
    rows = []
    if len(r.oopses) > 1:
        rows.append(_row("oopses", f"{len(r.oopses)} in the log (first is primary)"))
    if r.log is not None:
        rows.append(_row("log", f"{r.log.records} records"
                                f"{' (partial)' if r.log.partial else ''}"))
    if r.dump.bytes_fetched is not None:
        got, size = r.dump.bytes_fetched, r.dump.size
        rows.append(_row("bytes fetched", f"{got} of {size} ({100 * got / max(1, size):.2f}%)"))
    return rows


# The summary's sections, in order.
_SECTIONS = (_dump_rows, _crash_rows, _task_rows, _trace_rows, _symbols_rows, _memory_rows,
             _finding_rows, _footer_rows)


def summary(r: Report) -> str:
    """The human-readable summary of a report."""
    rows = [row for section in _SECTIONS for row in section(r)]
    width = max(len(a) for a, _, _ in rows) + 2
    out = []
    for label, value, below in rows:
        out.append(f"{label + ':':<{width}}{value}".rstrip())
        out.extend(below)
    if r.notes:
        out.append("notes:")
        out.extend(f"  {n}" for n in r.notes)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m crashfleet.commands.analyze DUMP [--log|--json]``: the command without the
    crashfleet shell (no settings file unless an ``s3://`` URI needs one)."""
    from crashfleet.cli import App

    parser = argparse.ArgumentParser(prog="crashfleet", allow_abbrev=False)
    parser.add_argument("--config")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args, App(args)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
