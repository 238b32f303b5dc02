"""Formatting and summarising benchmark rows (dicts of measurements), shared by the benches."""

from __future__ import annotations

import statistics
from collections.abc import Callable

__all__ = ["mb", "median_of", "median_ratio", "ms", "ratio"]


def ms(s: float | None) -> str:
    """Seconds as ``12.3 ms`` or ``1.23 s``; ``n/a`` for a measurement that did not run."""
    return "n/a" if s is None else f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def mb(kib: int | None) -> str:
    """KiB as whole MB; ``n/a`` when not measured."""
    return "n/a" if not kib else f"{kib / 1024:.0f} MB"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def median_of(rows: list[dict], key: str) -> float | None:
    """The median of ``key`` over the rows that have it."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def median_ratio(rows: list[dict], num: str, den: str,
                 skip: Callable[[dict], bool] = lambda r: False) -> str:
    """The median of ``num / den`` over the rows where both ran, with how many rows."""
    vals = [r[num] / r[den] for r in rows if r.get(num) and r.get(den) and not skip(r)]
    return f"{statistics.median(vals):.1f}x over {len(vals)}" if vals else "n/a"
