from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from agent.errors import DumpChanged
from agent.upload import RateLimiter, Uploader
from ingest import MIN_PART_SIZE, PartInfo

PART = MIN_PART_SIZE


class Interrupt(Exception):
    pass


def _file(tmp_path: Path, size: int) -> tuple[int, str, bytes]:
    data = os.urandom(size)
    p = tmp_path / "dump"
    p.write_bytes(data)
    return os.open(p, os.O_RDONLY), hashlib.sha256(data).hexdigest(), data


def test_upload_then_dedupe(store: Any, tmp_path: Path) -> None:
    fd, sha, data = _file(tmp_path, 2 * PART + 123)
    seen = bytearray()
    up = Uploader(store, part_size=PART, concurrency=2)
    r = up.upload(fd, len(data), f"dumps/{sha}", sha, {"sha256": sha}, on_data=seen.extend)
    assert (r.sent_bytes, r.reused_parts, r.already_stored) == (len(data), 0, False)
    assert bytes(seen) == data  # every byte seen once, in order
    info = store.head(f"dumps/{sha}")
    assert info.size == len(data) and info.metadata["sha256"] == sha
    assert store.get_range(f"dumps/{sha}", PART - 2, 4) == data[PART - 2:PART + 2]
    again = up.upload(fd, len(data), f"dumps/{sha}", sha, {"sha256": sha})
    assert again.already_stored and again.sent_bytes == 0
    os.close(fd)


def test_interrupted_upload_resumes_with_parts_reused(store: Any, tmp_path: Path) -> None:
    fd, sha, data = _file(tmp_path, 4 * PART + 999)
    journal: dict[str, Any] = {"parts": []}
    up = Uploader(store, part_size=PART, concurrency=1)

    def on_part(p: PartInfo) -> None:
        journal["parts"].append(p)
        if len(journal["parts"]) == 2:
            raise Interrupt  # the agent dies after two acknowledged parts

    def on_start(uid: str, ps: int) -> None:
        journal.update(upload_id=uid, part_size=ps)

    with pytest.raises(Interrupt):
        up.upload(fd, len(data), f"dumps/{sha}", sha, {}, on_start=on_start, on_part=on_part)
    assert store.head(f"dumps/{sha}") is None
    fresh = Uploader(store, part_size=PART, concurrency=3)
    r = fresh.upload(fd, len(data), f"dumps/{sha}", sha, {}, upload_id=journal["upload_id"],
                     part_size=journal["part_size"], done_parts=tuple(journal["parts"]))
    assert r.reused_parts == 2
    assert r.sent_bytes == len(data) - 2 * PART
    assert store.get_range(f"dumps/{sha}", 0, len(data)) == data
    os.close(fd)


def test_journal_disagreeing_with_store_is_not_trusted(store: Any, tmp_path: Path) -> None:
    fd, sha, data = _file(tmp_path, 2 * PART + 1)
    up = Uploader(store, part_size=PART, concurrency=1)
    uid = store.create_multipart(f"dumps/{sha}")
    real = store.upload_part(f"dumps/{sha}", uid, 1, data[:PART])
    bogus = PartInfo(number=2, size=PART, etag="0" * 32)  # never uploaded
    r = up.upload(fd, len(data), f"dumps/{sha}", sha, {}, upload_id=uid, part_size=PART,
                  done_parts=(real, bogus))
    assert r.reused_parts == 1
    assert store.get_range(f"dumps/{sha}", 0, len(data)) == data
    os.close(fd)


def test_changed_file_is_never_published_under_the_old_name(store: Any, tmp_path: Path) -> None:
    fd, sha, data = _file(tmp_path, PART + 10)
    with open(tmp_path / "dump", "r+b") as fh:
        fh.seek(PART + 5)
        fh.write(b"X")
    with pytest.raises(DumpChanged):
        Uploader(store, part_size=PART, concurrency=1).upload(fd, len(data), f"dumps/{sha}",
                                                              sha, {})
    assert store.head(f"dumps/{sha}") is None
    os.close(fd)


def test_small_file_single_put(store: Any, tmp_path: Path) -> None:
    fd, sha, data = _file(tmp_path, 1000)
    r = Uploader(store, part_size=PART, concurrency=1).upload(fd, 1000, f"d/{sha}", sha, {})
    assert r.sent_bytes == 1000
    assert store.get_range(f"d/{sha}", 0, 2000) == data
    os.close(fd)


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    rl = RateLimiter(1000.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        rl.take(500)
    # 2,500 bytes at 1,000 B/s: the fifth request starts 2 s after the first.
    assert sum(slept) == pytest.approx(2.0)
    assert RateLimiter(0).take(10**9) is None


@pytest.mark.parametrize(("size", "minimum", "expected"), [
    (0, PART, PART), (PART * 9000, PART, PART),
    (PART * 9000 + 1, PART, 6 * 1024 * 1024),  # one more byte: parts grow by whole MiB
    (1 << 40, PART, 117 * 1024 * 1024),  # a 1 TiB dump: 9,000 parts at most
])
def test_part_size_keeps_within_s3_part_limit(size: int, minimum: int, expected: int) -> None:
    from agent.upload import MAX_PARTS, part_size_for

    ps = part_size_for(size, minimum)
    assert ps == expected
    assert -(-size // ps) <= MAX_PARTS


def test_part_body_is_a_bounded_window_on_the_file(tmp_path: Path) -> None:
    from agent.upload import _SEND_CHUNK, _PartReader

    fd, _sha, data = _file(tmp_path, 3 * _SEND_CHUNK)
    lo, n = 1000, 2 * _SEND_CHUNK + 17
    body = _PartReader(fd, lo, n)
    assert len(body) == n
    first = body.read(10 * _SEND_CHUNK)  # a big ask is served in bounded pieces
    assert first == data[lo:lo + _SEND_CHUNK]
    assert body.read() == data[lo + _SEND_CHUNK:lo + n]  # read() still means "to the end"
    assert body.read(5) == b""
    body.seek(-7, os.SEEK_END)
    buf = bytearray(100)
    assert body.readinto(buf) == 7 and bytes(buf[:7]) == data[lo + n - 7:lo + n]
    body.seek(0)
    assert body.read() == data[lo:lo + n]  # seekable again for a retried request
    os.truncate(tmp_path / "dump", lo + 10)
    body.seek(20)
    with pytest.raises(DumpChanged):
        body.read(10)
    os.close(fd)


def _on_disk(root: Path, needle: bytes) -> bool:
    """Whether ``needle`` appears in any SeaweedFS volume file under ``root``."""
    for path in root.rglob("*.dat"):
        with path.open("rb") as fh:
            tail = b""
            while chunk := fh.read(4 * 1024 * 1024):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle):]
    return False


@pytest.mark.parametrize("size", [PART // 2, 2 * PART + 5], ids=["put", "multipart"])
def test_sse_s3_encrypts_what_the_agent_uploads(services: Any, s3_bucket: str, tmp_path: Path,
                                                size: int) -> None:
    """With ``sse = "AES256"`` both the single PUT and the multipart upload ask for SSE-S3:
    the server reports each object encrypted, ranged reads still return the plaintext, and
    the bytes are nowhere in its volume files, while an unencrypted control upload is.
    (SSE-KMS is not covered: the test server has no KMS.)"""
    import boto3

    from ingest.s3 import S3ObjectStore

    endpoint = services.s3_endpoint
    fd, sha, data = _file(tmp_path, size)
    sse = S3ObjectStore(s3_bucket, endpoint_url=endpoint, addressing_style="path", sse="AES256")
    Uploader(sse, part_size=PART, concurrency=2).upload(fd, size, f"dumps/{sha}", sha, {})
    os.close(fd)
    head = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").head_object(
        Bucket=s3_bucket, Key=f"dumps/{sha}")
    assert head["ServerSideEncryption"] == "AES256"
    assert sse.get_range(f"dumps/{sha}", size - 100, 100) == data[-100:]

    control = os.urandom(size)
    plain = S3ObjectStore(s3_bucket, endpoint_url=endpoint, addressing_style="path")
    plain.put("control", control)
    root = Path(services.root) / "seaweedfs"
    assert _on_disk(root, control[4096:4160])  # the scan finds plaintext when it is there
    assert not _on_disk(root, data[4096:4160])
