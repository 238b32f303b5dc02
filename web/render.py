"""Jinja2 environment and the small renderers templates use: SVG sparklines and bars built
from numbers only, times, taint letters, and the filters that make host text safe.

Autoescaping is on for every template; host text is never marked safe. The only markup made
here (:func:`sparkline`, :func:`bar`) is built from integers and dates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from foundation.text import term_safe
from vmcore.taint import TAINT_FLAGS

__all__ = ["TAINT_MEANINGS", "environment", "sparkline"]

TAINT_MEANINGS = {f.letter: f.meaning for f in TAINT_FLAGS}
TEMPLATES = Path(__file__).parent / "templates"


def sparkline(daily: Sequence[tuple[date, int]], width: int = 120, height: int = 22) -> Markup:
    """Daily counts as an inline SVG: one path of bars in integer units of a stretched view
    box, one title for the whole line (numbers and dates only: safe to emit as markup). Its
    cost is one short string per day with crashes."""
    n = max(1, len(daily))
    peak = max((c for _, c in daily), default=0) or 1
    total = sum(c for _, c in daily)
    busiest = max(daily, key=lambda d: d[1])[0].isoformat() if total else ""
    bars = "".join(f"M{i * 4} 100v-{max(7, 100 * c // peak)}h3V100z"
                   for i, (_, c) in enumerate(daily) if c)
    title = (f"{total} crashes in {n} days from {daily[0][0].isoformat()}, most ({peak}) "
             f"on {busiest}") if total else f"no crashes in {n} days"
    return Markup(f'<svg class="spark" width="{width}" height="{height}" '
                  f'viewBox="0 0 {n * 4} 104" preserveAspectRatio="none" role="img" '
                  f'aria-label="daily crashes"><title>{title}</title>'
                  f'<line x1="0" y1="103" x2="{n * 4}" y2="103" '
                  f'vector-effect="non-scaling-stroke"/><path d="{bars}"/></svg>')


def bar(count: int, peak: int, width: int = 160) -> Markup:
    """One horizontal bar of a histogram (numbers only)."""
    w = 0.0 if peak <= 0 else max(1.0, width * count / peak)
    return Markup(f'<svg class="bar" width="{width}" height="10" aria-hidden="true">'
                  f'<rect x="0" y="1" width="{w:.1f}" height="8"/></svg>')


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``3d ago``, ``5h ago``, ``just now``."""
    if when is None:
        return "?"
    now = now or datetime.now(UTC)
    s = int((now - when).total_seconds())
    if s < 0:
        return "in the future"
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return "just now"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "?"


def visible(text: object) -> str:
    """Host text with controls, bidi overrides and ANSI escapes shown as escapes (one line)."""
    return term_safe("" if text is None else str(text))


def visible_block(text: object) -> str:
    """The same for multi-line text (line breaks kept)."""
    return term_safe("" if text is None else str(text), keep_newlines=True)


def seg(text: object) -> str:
    """A URL path segment: every reserved character percent-encoded (``/`` too)."""
    return quote(str(text), safe="")


@dataclass(frozen=True)
class _Run:
    oops: bool
    lines: list[Any]


def groupby_runs(lines: Sequence[Any]) -> list[_Run]:
    """Consecutive log lines grouped by their ``oops`` mark (oops runs shown, the rest
    collapsed)."""
    runs: list[_Run] = []
    for ln in lines:
        if runs and runs[-1].oops == ln.oops:
            runs[-1].lines.append(ln)
        else:
            runs.append(_Run(ln.oops, [ln]))
    return runs


_HEXSTR = re.compile(r"0x[0-9a-f]{1,16}")


def pretty_json(raw: object) -> str:
    """Stored JSON text indented for reading (as it is when it does not parse)."""
    import json

    try:
        return json.dumps(json.loads(str(raw)), indent=2, ensure_ascii=False)
    except ValueError:
        return str(raw)


def hexaddr(value: object) -> str:
    """An address as hex: a number (report version 1) or a hex string (version 2)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}"
    if isinstance(value, str) and _HEXSTR.fullmatch(value):
        return value
    return "?"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(visible=visible, vblock=visible_block, seg=seg, ago=ago, when=when,
                       hexaddr=hexaddr, pretty_json=pretty_json, groupby_runs=groupby_runs,
                       qs=lambda d: urlencode([(k, v) for k, v in d.items()
                                               if v not in (None, "")]))
    env.globals.update(sparkline=sparkline, bar=bar, TAINT_MEANINGS=TAINT_MEANINGS)
    return env
