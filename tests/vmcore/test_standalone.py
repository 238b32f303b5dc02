"""The dump library stands on its own: it analyzes a real dump in a process where no service
dependency can be imported, and imports no other crashfleet package while doing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DUMP = ROOT / "tests" / "fixtures" / "dumps" / "6.1-uau-1--mkd-erase" / "vmcore.flat"

BLOCKED = ["boto3", "botocore", "kafka", "sqlalchemy", "structlog", "prometheus_client"]
OURS = ["foundation", "signature", "ingest", "symbol_cache", "store", "agent", "analyzer",
        "web", "crashfleet"]

_CHILD = r"""
import json, sys
BLOCKED = set(sys.argv[2].split(","))

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, _Refuse())
import boto3  # noqa: proves the block works
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_blocking_works() -> None:
    """The guard itself: with it in place, importing boto3 fails (else the test proves
    nothing)."""
    res = _run(_CHILD, "x", ",".join(BLOCKED))
    assert res.returncode != 0
    assert "boto3 is blocked in this test" in res.stderr


def test_library_analyzes_a_real_dump_without_service_dependencies() -> None:
    code = _CHILD.replace("import boto3  # noqa: proves the block works", r"""
from vmcore.analyze import analyze
from vmcore.source import LocalFileSource
with LocalFileSource(sys.argv[1]) as src:
    a = analyze(src)
r = a.report
mods = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"release": r.kernel.release, "oops": len(r.oopses),
                  "log_lines": len(a.log.records) if a.log else 0, "modules": mods}))
""")
    res = _run(code, str(DUMP), ",".join(BLOCKED))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["release"] == "6.1.0-56-cloud-amd64"
    assert out["oops"] >= 1 and out["log_lines"] > 100
    assert not set(out["modules"]) & set(BLOCKED + OURS), out["modules"]
