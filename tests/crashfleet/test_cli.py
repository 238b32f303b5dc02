from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "crashfleet.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHFLEET_")}
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=full_env)


@pytest.mark.parametrize(
    "args",
    [(), ("config",), ("config", "check"), ("config", "docs"), ("stack",), ("stack", "up"),
     ("stack", "status"), ("stack", "down")],
)
def test_help_on_every_level(args: tuple[str, ...]) -> None:
    r = run(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: crashfleet" in r.stdout


def test_unknown_command_is_usage_error() -> None:
    r = run("frobnicate")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [('[kafka]\nrequest_timeout_s = "soon"\n', "kafka.request_timeout_s"),
     ("[s3]\nbuckett = \"x\"\n", "s3.buckett")],
)
def test_config_check_bad_file_prints_one_line_and_exits_2(tmp_path: Path, text: str,
                                                           key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    for args in (("config", "check", str(cfg)), ("--config", str(cfg), "config", "check")):
        r = run(*args)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert key in lines[0]
        assert r.stdout == ""


def test_config_check_prints_effective_settings_with_secrets_redacted(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[kafka]\nsasl_password = "hunter2"\n[s3]\nbucket = "dumps"\n')
    r = run("config", "check", str(cfg), env={"CRASHFLEET_S3_REGION": "eu-west-1"})
    assert r.returncode == 0, r.stderr
    assert 'bucket = "dumps"' in r.stdout
    assert 'region = "eu-west-1"' in r.stdout
    assert 'sasl_password = "***"' in r.stdout
    assert "hunter2" not in r.stdout


def test_config_docs_matches_reference() -> None:
    r = run("config", "docs")
    assert r.returncode == 0
    assert r.stdout.startswith("# Configuration reference")
    assert "`CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS`" in r.stdout


def test_missing_explicit_config_is_config_error(tmp_path: Path) -> None:
    r = run("--config", str(tmp_path / "absent.toml"), "config", "check")
    assert r.returncode == 2
    assert "not found" in r.stderr
