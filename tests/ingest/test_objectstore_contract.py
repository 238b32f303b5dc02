"""One contract, two backends: the local-directory store and the real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from ingest import MIN_PART_SIZE, InvalidRange, ObjectNotFound, UploadNotFound


def test_put_head_get_range(store: Any) -> None:
    data = os.urandom(100_000)
    store.put("dumps/a", data, {"sha256": hashlib.sha256(data).hexdigest()})
    info = store.head("dumps/a")
    assert info is not None and info.size == len(data)
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    assert store.get_range("dumps/a", 0, 10) == data[:10]
    assert store.get_range("dumps/a", 4096, 8192) == data[4096:4096 + 8192]
    # A range running past the end returns what exists.
    assert store.get_range("dumps/a", len(data) - 5, 100) == data[-5:]


def test_missing_object(store: Any) -> None:
    assert store.head("nope/x") is None
    with pytest.raises(ObjectNotFound):
        store.get_range("nope/x", 0, 10)


def test_range_past_end_is_invalid(store: Any) -> None:
    store.put("small", b"abc")
    with pytest.raises(InvalidRange):
        store.get_range("small", 10, 5)


def test_put_if_absent_refuses_second_create(store: Any) -> None:
    assert store.put_if_absent("leases/x", b"first", {"owner": "a"}) is True
    assert store.put_if_absent("leases/x", b"second", {"owner": "b"}) is False
    assert store.get_range("leases/x", 0, 100) == b"first"
    info = store.head("leases/x")
    assert info is not None and info.metadata.get("owner") == "a"
    store.delete("leases/x")
    assert store.head("leases/x") is None
    assert store.put_if_absent("leases/x", b"third") is True


def test_list_by_prefix(store: Any) -> None:
    for k in ("p/1", "p/2", "q/1"):
        store.put(k, k.encode())
    assert [o.key for o in store.list_objects("p/")] == ["p/1", "p/2"]
    assert [o.size for o in store.list_objects("q/")] == [3]


def test_multipart_upload_20mb_resume_and_ranged_reads(store: Any) -> None:
    """A 21 MiB multipart upload, interrupted after two parts and resumed from list_parts."""
    part = MIN_PART_SIZE
    data = os.urandom(4 * part + 1024 * 1024)
    chunks = [data[i:i + part] for i in range(0, len(data), part)]
    upload = store.create_multipart("dumps/big", {"sha256": hashlib.sha256(data).hexdigest()})
    for n, chunk in enumerate(chunks[:2], start=1):
        store.upload_part("dumps/big", upload, n, chunk)
    # "Restart": what was uploaded is known from the store, not from memory.
    done = store.list_parts("dumps/big", upload)
    assert [(p.number, p.size) for p in done] == [(1, part), (2, part)]
    parts = list(done)
    for n, chunk in enumerate(chunks[2:], start=3):
        parts.append(store.upload_part("dumps/big", upload, n, chunk))
    assert store.head("dumps/big") is None  # nothing visible before completion
    assert store.complete_multipart("dumps/big", upload, parts) is True
    info = store.head("dumps/big")
    assert info is not None and info.size == len(data) >= 20 * 1024 * 1024
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    for start, length in ((0, 1), (part - 3, 7), (3 * part + 12345, 65536), (len(data) - 9, 9)):
        assert store.get_range("dumps/big", start, length) == data[start:start + length]


def test_multipart_complete_if_absent(store: Any) -> None:
    store.put("dumps/dup", b"already here")
    upload = store.create_multipart("dumps/dup")
    p = store.upload_part("dumps/dup", upload, 1, b"x" * 100)
    assert store.complete_multipart("dumps/dup", upload, [p], if_absent=True) is False
    assert store.get_range("dumps/dup", 0, 100) == b"already here"


def test_unknown_upload(store: Any) -> None:
    upload = store.create_multipart("dumps/gone")
    store.abort_multipart("dumps/gone", upload)
    with pytest.raises(UploadNotFound):
        store.list_parts("dumps/gone", upload)
    store.abort_multipart("dumps/gone", upload)  # idempotent
