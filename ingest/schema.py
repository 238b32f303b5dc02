"""Strict JSON codec for the wire records: frozen dataclasses <-> JSON objects.

Decoding checks every field against its annotation (str, int, float, bool, ``X | None``,
``Literal``, tuples, nested dataclasses) and raises :class:`SchemaError` naming the field path,
so a malformed event is rejected with a clear reason (and dead-lettered) instead of failing
somewhere downstream. Unknown fields are ignored, so older readers accept newer minor
additions; the ``schema_version`` field decides compatibility.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar

from ingest.errors import PermanentIngestError

__all__ = ["SchemaError", "decode", "encode", "from_plain", "to_plain"]

T = TypeVar("T")

# Bounds on what a decoder accepts: events are small.
MAX_EVENT_BYTES = 1024 * 1024


class SchemaError(PermanentIngestError):
    """A record does not match its schema; ``field`` is the dotted path of the culprit."""

    def __init__(self, message: str, *, field: str = ""):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def to_plain(obj: Any) -> Any:
    """A dataclass tree as JSON-ready plain data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a dataclass record."""
    return json.dumps(to_plain(obj), separators=(",", ":"), sort_keys=True).encode()


def _check(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise SchemaError(f"expected one of {typing.get_args(tp)}, got {value!r}", field=path)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(arg, value, path)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(f"no alternative matched ({'; '.join(errors)})", field=path)
    if origin is tuple:
        if not isinstance(value, list):
            raise SchemaError(f"expected a list, got {type(value).__name__}", field=path)
        item = typing.get_args(tp)[0]
        return tuple(_check(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return from_plain(tp, value, path)  # type: ignore[arg-type]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(f"expected a number, got {type(value).__name__}", field=path)
        return float(value)
    if tp in (str, int, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SchemaError(f"expected {tp.__name__}, got {type(value).__name__}", field=path)
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")  # a schema bug


def from_plain(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from plain data, checking every field."""
    if not isinstance(data, dict):
        raise SchemaError(f"expected an object, got {type(data).__name__}", field=path or "$")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is not dataclasses.MISSING:
                continue
            if f.default_factory is not dataclasses.MISSING:
                continue
            raise SchemaError("missing", field=sub)
        kwargs[f.name] = _check(hints[f.name], data[f.name], sub)
    return cls(**kwargs)


def decode(cls: type[T], raw: bytes) -> T:
    """Parse JSON bytes into ``cls``; SchemaError for anything malformed."""
    if len(raw) > MAX_EVENT_BYTES:
        raise SchemaError(f"record of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    return from_plain(cls, data)
