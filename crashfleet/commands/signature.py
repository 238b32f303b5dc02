"""``crashfleet signature REPORT.json|DUMP [--explain] [--json]``: the title, signature and
cluster of one crash, and with ``--explain`` why: each frame kept, skipped (by which data-file
line) or kept as a prefix, every normalization, the crash-kinds row that made the title.

``REPORT.json`` is a report as ``crashfleet analyze --json`` prints it or as the analyzer
stores it beside the dump; anything else is decoded as a dump. The cluster is looked up,
read-only, in the configured store when it answers (``--no-store`` skips it). Exit codes: 0
ok, 1 the input cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crashfleet.cli import App
    from signature.explain import Explanation
    from vmcore.report import Report

__all__ = ["register", "report_from_json"]

MAX_REPORT_JSON = 64 * 1024 * 1024  # bytes: a report is kilobytes; anything this big is not one


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``signature`` command."""
    p = sub.add_parser(
        "signature", help="a crash's title, signature and cluster, and why",
        description="Compute the title, signature and cluster of a report or dump; "
                    "--explain says which rule kept or skipped each frame.")
    p.add_argument("input", metavar="REPORT.json|DUMP")
    p.add_argument("--explain", action="store_true",
                   help="each frame's fate with the data-file line that decided it")
    p.add_argument("--json", action="store_true", help="the explanation as JSON")
    p.add_argument("--no-store", action="store_true", help="do not look the cluster up")
    sym = p.add_mutually_exclusive_group()
    sym.add_argument("--vmlinux", metavar="PATH", help="a DUMP's debug vmlinux (memory unwind)")
    sym.add_argument("--symbols", action="store_true",
                     help="a DUMP's pack from the symbol cache in the settings")
    p.set_defaults(func=_signature, no_logging_setup=True)


def _load(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp`` of the report's records; ValueError naming
    the field when it does not fit."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kw = {}
        for f in dataclasses.fields(tp):
            key = "class" if f.name == "klass" else f.name
            if key in value:
                kw[f.name] = _load(hints[f.name], value[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}.{key}: missing")
        return tp(**kw)  # type: ignore[operator]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        return _load(next(a for a in typing.get_args(tp) if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        item = typing.get_args(tp)[0]
        return tuple(_load(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError(f"{where}: expected an object of strings")
        return {str(k): v for k, v in value.items()}
    want = {int: int, str: str, bool: bool}.get(tp)
    if want is None or not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {getattr(tp, '__name__', tp)}")
    return value


def report_from_json(text: bytes) -> Report:
    """A :class:`~vmcore.report.Report` from its JSON form (ValueError: not a report)."""
    from vmcore.report import SCHEMA, Report

    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    # The analyzer stores the signature's findings ({"kind", "module"}) in place of the
    # report's; the signature reads only those two fields.
    findings = body.get("findings")
    if isinstance(findings, list):
        body["findings"] = [{"address": None, "thread": None, "evidence": [], **f}
                            if isinstance(f, dict) else f for f in findings]
    report: Report = _load(Report, body, "report")
    return report


def _read_report(args: argparse.Namespace, app: App) -> Report:
    path = Path(args.input)
    with open(path, "rb") as f:
        head = f.read(1)
    if head == b"{":
        if path.stat().st_size > MAX_REPORT_JSON:
            raise ValueError(f"larger than {MAX_REPORT_JSON} bytes: not a report")
        return report_from_json(path.read_bytes())
    from crashfleet.commands.analyze import _pack_provider
    from vmcore.analyze import analyze
    from vmcore.source import LocalFileSource

    src = LocalFileSource(str(path))
    try:
        return analyze(src, symbols=_pack_provider(args, app)).report
    finally:
        src.close()


def _cluster(args: argparse.Namespace, app: App, ex: Explanation) -> tuple[str | None, str]:
    """``(cluster id, how)`` from the configured store, or ``(None, why not)``."""
    if args.no_store:
        return None, "not looked up (--no-store)"
    try:
        url = app.settings().store.url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None, "no store (the SQLite file does not exist)"
        from store import CrashStore

        store = CrashStore(url)
        try:
            return store.cluster_for(ex.signature, ex.title.alternatives)
        finally:
            store.dispose()
    except Exception as exc:  # the explanation stands without the store; say why
        return None, f"store unavailable ({type(exc).__name__}: {str(exc)[:200]})"


_HOW = {"signature": "known signature", "joined": "a new signature joining it",
        "new": "a new cluster"}


def render(ex: Explanation, cluster: tuple[str | None, str], explain: bool) -> str:
    """The text output: title, signature, id and cluster; with ``explain`` every decision."""
    from foundation.text import term_safe
    from signature.titles import KINDS_FILE

    sig, t = ex.signature, ex.title
    out = []
    if explain:
        out.append(f"frames (from {ex.source}, the RIP first):")
        for d in ex.frames:
            rule = f"  {d.rule.file}:{d.rule.line} {d.rule.pattern}" if d.rule else ""
            steps = f"  ({'; '.join(d.normalizations)})" if d.normalizations else ""
            shown = d.raw if d.verdict not in ("kept", "prefix") else d.text
            out.append(term_safe(f"  {d.verdict:<12}{shown}{rule}{steps}"))
        if ex.omitted:
            out.append(f"  … {ex.omitted} more frames past the budget")
        out.append("normalizations:")
        out.extend(term_safe(f"  {s}") for s in ex.normalizations or ("(none)",))
        out.append(f"title kind:   {t.kind} ({KINDS_FILE}:{t.line}), matched "
                   f"{term_safe(t.fact)!r}" if t.line else f"title kind:   {t.kind}")
        if t.function:
            out.append(f"title frame:  {term_safe(t.function)}")
        out.append("alternatives: " + (term_safe(" | ".join(t.alternatives)) or "(none)"))
    cid, how = cluster
    out += [f"title:        {term_safe(t.text)}", f"signature:    {term_safe(sig.text)}",
            f"id:           {sig.id}",
            f"cluster:      {cid} ({_HOW.get(how, how)})" if cid else f"cluster:      {how}"]
    return "\n".join(out) + "\n"


def _signature(args: argparse.Namespace, app: App) -> int:
    from signature.inputs import sign_report
    from vmcore.errors import AnalyzerError

    try:
        report = _read_report(args, app)
    except (OSError, ValueError, AnalyzerError) as exc:
        from foundation.text import term_safe

        print(f"crashfleet: error: {term_safe(args.input)}: {term_safe(str(exc))}",
              file=sys.stderr)
        return 1
    ex = sign_report(report).explanation
    cluster = _cluster(args, app, ex)
    if args.json:
        body = ex.to_dict()
        body["cluster"] = {"id": cluster[0], "how": cluster[1]}
        print(json.dumps(body, indent=2))
    else:
        sys.stdout.write(render(ex, cluster, args.explain))
    return 0
