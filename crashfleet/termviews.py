"""The terminal views of the store: the cluster table and a cluster's crashes, with column
headers, UTC times and titles. Host text (kernels, hosts, signatures, findings) goes through
:func:`foundation.text.term_safe`; ``--json`` output never does (JSON escapes exactly)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from foundation.text import term_safe
from store import ClusterRow, CrashRow

__all__ = ["cluster_table", "clusters_json", "crash_table", "crashes_json"]


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else "?"


def _title(row: Any) -> str:
    # The titles work adds ``title``; until a row has one, the signature text stands in.
    return str(getattr(row, "title", None) or row.signature)


# One character, or one escape term_safe wrote: the wrapping never cuts an escape in two.
_UNIT = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|\\)|.", re.DOTALL)


def _wrap(text: str, indent: int, width: int) -> list[str]:
    room = max(20, width - indent)
    out: list[str] = []
    line = ""
    for m in _UNIT.finditer(text):
        if len(line) + len(m.group()) > room and line:
            out.append(line)
            line = ""
        line += m.group()
    return [" " * indent + ln for ln in ([*out, line] if line else out)] or [""]


def cluster_table(rows: Sequence[ClusterRow], width: int = 110) -> str:
    """Count, hosts, first and last seen, kernels; then title, findings and signature."""
    if not rows:
        return "no clusters yet\n"
    lines = [f"{'CLUSTER':16}  {'COUNT':>5}  {'HOSTS':>5}  {'FIRST SEEN':16}  "
             f"{'LAST SEEN':16}  KERNELS / TITLE / FINDINGS / SIGNATURE"]
    for r in rows:
        kernels = term_safe(", ".join(r.kernels))
        lines.append(f"{term_safe(r.id):16}  {r.count:5}  {r.hosts:5}  "
                     f"{_when(r.first_seen):16}  {_when(r.last_seen):16}  {kernels}")
        title = term_safe(_title(r))
        if title != term_safe(r.signature):
            lines += _wrap(title, 6, width)
        if r.findings:
            lines += _wrap("findings: " + term_safe(", ".join(r.findings)), 6, width)
        lines += _wrap(term_safe(r.signature), 6, width)
    return "\n".join(lines) + "\n"


def clusters_json(rows: Sequence[ClusterRow]) -> list[dict[str, Any]]:
    return [{"id": r.id, "title": _title(r), "signature": r.signature,
             "panic_class": r.panic_class, "taint": r.taint, "findings": list(r.findings),
             "count": r.count, "hosts": r.hosts, "kernels": list(r.kernels),
             "first_seen": r.first_seen.isoformat(), "last_seen": r.last_seen.isoformat()}
            for r in rows]


def crash_table(rows: Sequence[CrashRow], width: int = 110) -> str:
    """One line per crash: time, host, kernel, event id; the title under it."""
    lines = [f"{'TIME':16}  {'HOST':20}  {'KERNEL':26}  EVENT / TITLE"]
    for r in rows:
        lines.append(f"{_when(r.crash_time or r.analyzed_at):16}  {term_safe(r.host):20}  "
                     f"{term_safe(r.kernel_release or '?'):26}  {term_safe(r.event_id)}")
        lines += _wrap(term_safe(_title(r)), 6, width)
    return "\n".join(lines) + "\n"


def crashes_json(rows: Sequence[CrashRow]) -> list[dict[str, Any]]:
    return [{"event_id": r.event_id, "host": r.host, "kernel": r.kernel_release,
             "crash_time": r.crash_time.isoformat() if r.crash_time else None,
             "analyzed_at": r.analyzed_at.isoformat(), "title": _title(r),
             "signature": r.signature, "dump_key": r.dump_key, "report_key": r.report_key}
            for r in rows]


