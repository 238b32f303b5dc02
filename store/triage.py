"""Triage state of clusters: open, fixed in a kernel, or ignored; with a note and who set it.

A cluster marked fixed in kernel X that recurs on a kernel at or after X is *regressed*: the
write path (:mod:`store.aggregates`) stamps ``regressed_at`` when such a crash is stored, and
setting the state checks the kernels already seen after the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from store.aggregates import kernel_key
from store.schema import cluster_kernels, triage

__all__ = ["STATES", "TriageError", "TriageState", "read_triage", "write_triage"]

STATES = ("open", "fixed", "ignored")
State = Literal["open", "fixed", "ignored"]
MAX_NOTE = 2000
MAX_WHO = 255


class TriageError(ValueError):
    """A triage change that cannot be stored (unknown state, fixed without a kernel…)."""


@dataclass(frozen=True)
class TriageState:
    """``state`` of ``cluster_id``; ``fixed_in`` the kernel release of the fix (state fixed);
    ``regressed_at``/``regressed_kernel`` when it recurred at or after that kernel."""

    cluster_id: str
    state: str
    fixed_in: str | None
    note: str
    who: str
    updated_at: datetime | None
    regressed_at: datetime | None = None
    regressed_kernel: str | None = None

    @property
    def regressed(self) -> bool:
        return self.state == "fixed" and self.regressed_at is not None


def _utc(v: datetime | None) -> datetime | None:
    from datetime import UTC

    return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)


def read_triage(conn: sa.Connection, cluster_ids: list[str]) -> dict[str, TriageState]:
    """The triage rows of ``cluster_ids`` (clusters never triaged are absent: open)."""
    if not cluster_ids:
        return {}
    rows = conn.execute(sa.select(triage).where(triage.c.cluster_id.in_(cluster_ids)))
    return {r.cluster_id: TriageState(r.cluster_id, r.state, r.fixed_in, r.note, r.who,
                                      _utc(r.updated_at), _utc(r.regressed_at),
                                      r.regressed_kernel) for r in rows}


def write_triage(conn: sa.Connection, cluster_id: str, state: str, *, fixed_in: str | None,
                 note: str, who: str, now: datetime) -> TriageState:
    """Set the state of ``cluster_id`` (which must exist)."""
    if state not in STATES:
        raise TriageError(f"unknown triage state {state!r}: one of {', '.join(STATES)}")
    fixed_in = (fixed_in or "").strip()[:128] or None
    if state == "fixed" and not fixed_in:
        raise TriageError("state fixed needs the kernel release of the fix (fixed_in)")
    if state != "fixed":
        fixed_in = None
    regressed_at = regressed_kernel = None
    if fixed_in:
        # Kernels at or after the fix already crashing since this change: regressed at once.
        for kernel, last in conn.execute(
                sa.select(cluster_kernels.c.kernel, cluster_kernels.c.last_seen)
                .where(cluster_kernels.c.cluster_id == cluster_id)):
            last = _utc(last)
            if last is not None and last > now and kernel_key(kernel) >= kernel_key(fixed_in):
                regressed_at, regressed_kernel = now, kernel
    values: dict[str, Any] = {"state": state, "fixed_in": fixed_in, "note": note[:MAX_NOTE],
              "who": who[:MAX_WHO], "updated_at": now, "regressed_at": regressed_at,
              "regressed_kernel": regressed_kernel}
    updated = conn.execute(sa.update(triage).where(triage.c.cluster_id == cluster_id)
                           .values(**values)).rowcount
    if not updated:
        conn.execute(sa.insert(triage).values(cluster_id=cluster_id, **values))
    return TriageState(cluster_id, state, fixed_in, values["note"], values["who"], now,
                       regressed_at, regressed_kernel)
