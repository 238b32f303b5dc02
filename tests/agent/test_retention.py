"""Retention as a pure selection, on literal journal rows."""

from __future__ import annotations

import pytest

from agent.journal import DumpRow
from agent.retention import select_for_removal


def _row(i: int, size: int, mtime: int) -> DumpRow:
    return DumpRow(id=i, path=f"/var/crash/{i}", dev=1, ino=i, size=size, mtime_ns=mtime,
                   layout="plain", dmesg_path=None, crash_time_hint=None, host=None,
                   state="announced", sha256=None, key=None, upload_id=None, part_size=None,
                   parts=(), attempts=0, next_attempt=0.0, last_error=None, detected_at=0.0,
                   shipped_at=None, removed=False)


ROWS = [_row(1, 100, 10), _row(2, 200, 30), _row(3, 300, 20), _row(4, 400, 40)]


@pytest.mark.parametrize(("policy", "keep", "max_bytes", "removed"), [
    ("keep", 1, 1, []),
    ("delete", 0, 0, [4, 2, 3, 1]),
    ("limit", 2, 0, [3, 1]),            # newest written first: 4, 2 stay
    ("limit", 0, 650, [3, 1]),          # 400 + 200 fit, + 300 does not
    ("limit", 3, 450, [2, 3, 1]),       # the byte bound bites first
    ("limit", 0, 0, []),                # no bound set: nothing goes
])
def test_select_for_removal(policy: str, keep: int, max_bytes: int, removed: list[int]) -> None:
    doomed = select_for_removal(ROWS, policy, keep_newest=keep, max_bytes=max_bytes)
    assert [r.id for r in doomed] == removed
