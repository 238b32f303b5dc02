"""Deployment files: alert rules under promtool (check + unit tests), the dashboard and rules
use only metrics crashfleet exports, and the systemd units pass systemd-analyze."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentMetrics
from analyzer.metrics import METRIC_NAMES, AnalyzerMetrics, StoreCollector
from store import CrashStore

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def promtool() -> str:
    r = subprocess.run(["bash", str(REPO / "scripts" / "get-promtool.sh")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"promtool unavailable: {r.stderr}"
    return r.stdout.strip()


def test_promtool_check_rules(promtool: str) -> None:
    r = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 10 rules found" in r.stdout


def test_promtool_rule_unit_tests(promtool: str) -> None:
    r = subprocess.run([promtool, "test", "rules", "alerts_test.yml"],
                       cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _exported(tmp_path: Path) -> set[str]:
    """Metric family names as scraped from a real registry of analyzer + agent metrics."""
    store = CrashStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    store.migrate()
    registry = CollectorRegistry()
    AnalyzerMetrics(registry)
    AgentMetrics(registry)
    registry.register(StoreCollector(store))
    text = generate_latest(registry).decode()
    store.dispose()
    names = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names.update(fam.name + sfx for sfx in ("_bucket", "_sum", "_count"))
    return names


def _used_metrics() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    used["alerts.yml"] = set(re.findall(r"\bcrashfleet_[a-z_]+", rules))
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "crashfleet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used["crashfleet.json"] = {m for e in exprs for m in re.findall(r"\bcrashfleet_[a-z_]+", e)}
    return used


def test_every_metric_used_by_rules_and_dashboard_is_exported(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    for where, names in _used_metrics().items():
        assert names, where
        missing = sorted(names - exported)
        assert not missing, f"{where} uses metrics nobody exports: {missing}"
    # The declared list and the real registry agree.
    for name in METRIC_NAMES:
        assert name in exported or name + "_total" in exported, name


def test_dashboard_covers_the_required_views() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "crashfleet.json").read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for view in ("signatures", "top clusters", "kernel", "taint", "pipeline"):
        assert view in titles, view


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("unit", ["crashfleet-agent.service", "crashfleet-analyzer.service"])
def test_systemd_units_verify(tmp_path: Path, unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    # Point ExecStart at this checkout's crashfleet so verify can resolve it.
    exe = Path(sys.executable).parent / "crashfleet"
    (tmp_path / unit).write_text(text.replace("/usr/bin/crashfleet", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert unit not in r.stdout + r.stderr, r.stdout + r.stderr  # no warning about the unit
