"""Least privilege: the systemd units' exposure under ``systemd-analyze security`` stays at or
below the agreed levels (agent ≤ 1.9, analyzer below 2.4, the levels before issue 18)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize(("unit", "ceiling"), [
    ("crashfleet-agent.service", 1.9),
    ("crashfleet-analyzer.service", 2.3),
])
def test_exposure(unit: str, ceiling: float) -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNITS / unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= ceiling, r.stdout
