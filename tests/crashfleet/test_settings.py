from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import ConfigError
from foundation.settings import env_name, load_settings, redacted, reference_markdown

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_without_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "absent.toml", env={})
    assert s.kafka.bootstrap_servers == ("127.0.0.1:9092",)
    assert s.s3.max_attempts == 3


def test_file_and_env_override(tmp_path: Path) -> None:
    p = _write(tmp_path, '[kafka]\nbootstrap_servers = ["a:1", "b:2"]\nrequest_timeout_s = 3\n')
    s = load_settings(p, env={"CRASHFLEET_KAFKA_REQUEST_TIMEOUT_S": "2.5",
                              "CRASHFLEET_S3_BUCKET": "dumps", "OTHER": "x"})
    assert s.kafka.bootstrap_servers == ("a:1", "b:2")
    assert s.kafka.request_timeout_s == 2.5  # environment wins over the file
    assert s.s3.bucket == "dumps"


@pytest.mark.parametrize(
    ("text", "env", "key", "fragment"),
    [
        ('[kafka]\nrequest_timeout_s = "slow"\n', {}, "kafka.request_timeout_s", "expected number"),
        ("[kafka]\nbogus = 1\n", {}, "kafka.bogus", "unknown setting"),
        ("[nosuch]\nx = 1\n", {}, "nosuch", "unknown section"),
        ('[s3]\nmax_attempts = 1.5\n', {}, "s3.max_attempts", "integer"),
        ("[s3]\nmax_attempts = 0\n", {}, "s3.max_attempts", "at least"),
        ('[log]\nlevel = "loud"\n', {}, "log.level", "one of"),
        ('[kafka]\nbootstrap_servers = "a:1"\n', {}, "kafka.bootstrap_servers", "list"),
        ("", {"CRASHFLEET_S3_MAX_ATTEMPTS": "many"}, "s3.max_attempts", "environment"),
        ("", {"CRASHFLEET_NOPE": "1"}, "CRASHFLEET_NOPE", "unknown setting"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, env: dict[str, str],
                                       key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, text), env=env)
    assert info.value.key == key
    assert key in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={}, require_file=True)


def test_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[kafka\n"), env={})


def test_secrets_are_redacted(tmp_path: Path) -> None:
    p = _write(tmp_path, '[kafka]\nsasl_password = "hunter2"\n'
                         '[store]\nurl = "postgresql+psycopg://cf:s3cret@db/crashes"\n')
    out = redacted(load_settings(p, env={}))
    assert out["kafka"]["sasl_password"] == "***"
    assert out["store"]["url"] == "postgresql+psycopg://cf:***@db/crashes"
    assert "hunter2" not in repr(out) and "s3cret" not in repr(out)


def test_env_names() -> None:
    assert env_name("kafka.bootstrap_servers") == "CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS"


def test_configuration_reference_is_in_sync() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: regenerate with "
        "'crashfleet config docs > docs/configuration.md'"
    )


def test_web_token_only_from_the_environment(tmp_path: Path) -> None:
    """The web UI's bearer token is a secret: the file may not hold it, the environment may,
    and `config check` output redacts it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[web]\nport = 9000\ntoken = "in-the-file"\n')
    with pytest.raises(ConfigError, match="CRASHFLEET_WEB_TOKEN"):
        load_settings(cfg, env={})
    cfg.write_text("[web]\nport = 9000\nproxy_user_header = \"X-Forwarded-User\"\n")
    s = load_settings(cfg, env={"CRASHFLEET_WEB_TOKEN": "s3cret"})
    assert (s.web.port, s.web.token, s.web.host) == (9000, "s3cret", "127.0.0.1")
    assert redacted(s)["web"]["token"] == "***"
