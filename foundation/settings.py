"""Settings: declared once, loaded from one TOML file plus ``CRASHFLEET_*`` environment overrides.

Every setting is a field of a frozen section dataclass in :mod:`foundation.sections`, declared
with :func:`setting`
(default and one-line description); its type is the field's annotation. The loader, the
``config check`` output, the environment variable names and ``docs/configuration.md`` are all
derived from these declarations, so a setting cannot exist in one place and not another.

Environment overrides are named ``CRASHFLEET_<SECTION>_<KEY>`` in upper case, for example
``CRASHFLEET_KAFKA_BOOTSTRAP_SERVERS``; list values are comma-separated there.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from foundation.errors import ConfigError
from foundation.sections import (
    AgentSettings,
    AnalyzerSettings,
    KafkaSettings,
    LogSettings,
    S3Settings,
    Settings,
    StoreSettings,
    SymbolsSettings,
    WebSettings,
    setting,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentSettings",
    "AnalyzerSettings",
    "KafkaSettings",
    "LogSettings",
    "S3Settings",
    "Settings",
    "StoreSettings",
    "SymbolsSettings",
    "WebSettings",
    "describe",
    "env_name",
    "load_settings",
    "redacted",
    "reference_markdown",
    "setting",
]

DEFAULT_CONFIG_PATH = Path("/etc/crashfleet/crashfleet.toml")
ENV_PREFIX = "CRASHFLEET_"
_REDACTED = "***"


# ---------------------------------------------------------------------------------------------
# Introspection over the declarations.


@dataclass(frozen=True)
class _Decl:
    section: str
    name: str
    type: Any
    default: Any
    doc: str
    secret: bool
    minimum: float | None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def describe() -> list[_Decl]:
    """Every declared setting, in declaration order."""
    out: list[_Decl] = []
    for section, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append(
                _Decl(
                    section=section,
                    name=f.name,
                    type=hints[f.name],
                    default=f.default,
                    doc=f.metadata["doc"],
                    secret=f.metadata["secret"],
                    minimum=f.metadata["minimum"],
                )
            )
    return out


def env_name(key: str) -> str:
    """The environment variable overriding dotted setting ``key``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "list of strings"
    if tp is Path:
        return "path"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]


def _coerce(decl: _Decl, value: Any, source: str) -> Any:
    """Check ``value`` (from TOML, or a string from the environment) against the declaration."""
    tp = decl.type
    from_env = source.startswith("environment")

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"{decl.key}: expected {expected}, got {type(value).__name__} {value!r} ({source})",
            key=decl.key,
            source=source,
        )

    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise bad(_type_name(tp))
        return value
    if origin is tuple:
        if from_env and isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise bad("a list of strings")
    if tp is bool:
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise bad("a boolean")
    if tp is int or tp is float:
        num: Any = value
        if from_env and isinstance(value, str):
            try:
                num = tp(value)
            except ValueError:
                raise bad(_type_name(tp)) from None
        if isinstance(num, bool) or not isinstance(num, int | float):
            raise bad(_type_name(tp))
        if tp is int and not isinstance(num, int):
            raise bad("an integer")
        if decl.minimum is not None and num < decl.minimum:
            raise ConfigError(
                f"{decl.key}: must be at least {decl.minimum}, got {num!r} ({source})",
                key=decl.key,
                source=source,
            )
        return tp(num)
    if tp is Path:
        if isinstance(value, str):
            return Path(value)
        raise bad("a path string")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    raise TypeError(f"unsupported setting type {tp!r}")  # a declaration bug, not user input


def load_settings(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    require_file: bool = False,
) -> Settings:
    """Load settings from TOML file ``path`` (if it exists) and environment overrides.

    Raises :class:`ConfigError` naming the key for unknown keys, wrong types and values out of
    range, and for a missing file when ``require_file`` is true.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        try:
            with path.open("rb") as fh:
                import tomllib  # only when there is a file (every command loads settings)

                raw = tomllib.load(fh)
            source = str(path)
        except FileNotFoundError:
            if require_file:
                raise ConfigError(
                    f"configuration file not found: {path}", source=str(path)
                ) from None
        except ValueError as exc:  # tomllib.TOMLDecodeError
            raise ConfigError(f"{path}: not valid TOML: {exc}", source=str(path)) from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}", source=str(path)) from None

    decls = describe()
    by_section: dict[str, dict[str, _Decl]] = {}
    for d in decls:
        by_section.setdefault(d.section, {})[d.name] = d

    if isinstance(raw.get("web"), dict) and raw["web"].get("token"):
        raise ConfigError(f"web.token: set it through {env_name('web.token')}, not in the "
                          f"file ({source})", key="web.token", source=source)
    values: dict[str, dict[str, Any]] = {s: {} for s in by_section}
    for section, body in raw.items():
        if section not in by_section:
            raise ConfigError(f"{section}: unknown section ({source})", key=section, source=source)
        if not isinstance(body, dict):
            raise ConfigError(
                f"{section}: expected a table, got {type(body).__name__} ({source})",
                key=section,
                source=source,
            )
        for name, value in body.items():
            decl = by_section[section].get(name)
            if decl is None:
                raise ConfigError(
                    f"{section}.{name}: unknown setting ({source})",
                    key=f"{section}.{name}",
                    source=source,
                )
            values[section][name] = _coerce(decl, value, source)

    known_env = {env_name(d.key): d for d in decls}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var in _NON_SETTING_ENV:
            continue
        decl = known_env.get(var)
        if decl is None:
            raise ConfigError(
                f"{var}: unknown setting (environment)", key=var, source="environment"
            )
        values[decl.section][decl.name] = _coerce(decl, text, f"environment {var}")

    section_types = _section_types()
    sections = {s: section_types[s](**vals) for s, vals in values.items()}
    return Settings(**sections)


# Environment variables with the prefix that are not settings: read by the CLI itself, the
# make targets, the fixture factory and the test suite. Any other CRASHFLEET_* is a typo.
_NON_SETTING_ENV = frozenset({
    "CRASHFLEET_CONFIG", "CRASHFLEET_CACHE", "CRASHFLEET_TOOLS", "CRASHFLEET_DEMO_METRICS_PORT",
    "CRASHFLEET_FIXTURES_DIR", "CRASHFLEET_CORPUS", "CRASHFLEET_COMMITTED",
    "CRASHFLEET_GUEST_CPUS", "CRASHFLEET_GUEST_MEMORY", "CRASHFLEET_TEST_CORPUS",
    "CRASHFLEET_TEST_POSTGRES_DSN", "CRASHFLEET_DEMO_WEB_PORT",
})


def _redact_url(url: str) -> str:
    # Keep the URL readable but hide a password: scheme://user:***@host/db
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":" + _REDACTED
    return f"{scheme}://{creds}@{host}"


def redacted(settings: Settings) -> dict[str, dict[str, Any]]:
    """Effective settings as plain data, with secrets hidden."""
    out: dict[str, dict[str, Any]] = {}
    for d in describe():
        value = getattr(getattr(settings, d.section), d.name)
        if d.secret and value:
            value = _redact_url(value) if d.key == "store.url" else _REDACTED
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, Path):
            value = str(value)
        out.setdefault(d.section, {})[d.name] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def reference_markdown() -> str:
    """The configuration reference (``docs/configuration.md``), derived from the declarations."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `crashfleet config docs`; a test keeps this file in sync. -->",
        "",
        f"crashfleet reads one TOML file (`--config`, default `{DEFAULT_CONFIG_PATH}`, or the",
        "`CRASHFLEET_CONFIG` environment variable), then applies `CRASHFLEET_<SECTION>_<KEY>`",
        "environment overrides (lists comma-separated). Unknown keys and wrong types are errors.",
        "`crashfleet config check` validates a file and prints the effective settings with",
        "secrets redacted.",
        "",
    ]
    section_types = _section_types()
    grouped: dict[str, list[_Decl]] = {}
    for d in describe():
        grouped.setdefault(d.section, []).append(d)
    for section, decls in grouped.items():
        doc = (section_types[section].__doc__ or "").strip().splitlines()[0]
        lines += [
            f"## [{section}]",
            "",
            doc,
            "",
            "| key | type | default | environment | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for d in decls:
            secret = " (secret: redacted in output)" if d.secret else ""
            lines.append(
                f"| `{d.name}` | {_type_name(d.type)} | `{_toml_value(d.default)}` "
                f"| `{env_name(d.key)}` | {d.doc}{secret} |"
            )
        lines.append("")
    return "\n".join(lines)
