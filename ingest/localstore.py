"""The local-directory object store: the embedded default's stand-in for S3.

Layout under ``root``: ``data/<key>`` (the bytes), ``meta/<key>.json`` (metadata and etag),
``uploads/<upload id>/`` (parts of unfinished multipart uploads). Every write goes to a
temporary file first and appears by rename, so readers never see partial objects;
create-if-absent uses ``link(2)``, which fails atomically when the name exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ingest.errors import InvalidRange, ObjectNotFound, PermanentIngestError, UploadNotFound
from ingest.objectstore import ObjectInfo, PartInfo, SizedReader

__all__ = ["LocalObjectStore"]

_COPY_CHUNK = 1024 * 1024


class LocalObjectStore:
    """Objects as files below directory ``root`` (created when missing)."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        for sub in ("data", "meta", "uploads", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        return f"file://{self.root}"

    # -- paths --------------------------------------------------------------------------------

    def _path(self, base: str, key: str, suffix: str = "") -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise PermanentIngestError(f"invalid object key {key!r}")
        return self.root / base / (key + suffix)

    def _tmp(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    def _write_meta(self, key: str, etag: str, metadata: Mapping[str, str] | None) -> None:
        meta = self._path("meta", key, ".json")
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        tmp.write_text(json.dumps({"etag": etag, "metadata": dict(metadata or {})}))
        os.replace(tmp, meta)

    def _publish(self, tmp: Path, key: str, etag: str, metadata: Mapping[str, str] | None,
                 *, if_absent: bool) -> bool:
        dest = self._path("data", key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if if_absent:
            # link(2) decides the single winner atomically; only the winner writes metadata.
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            self._write_meta(key, etag, metadata)
            return True
        # Metadata first: an object is visible only once its data file exists.
        self._write_meta(key, etag, metadata)
        os.replace(tmp, dest)
        return True

    # -- objects ------------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path("data", key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(self._path("meta", key, ".json").read_text())
        except (FileNotFoundError, ValueError):
            meta = {"etag": "", "metadata": {}}
        return ObjectInfo(key=key, size=size, etag=meta["etag"], metadata=meta["metadata"])

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise InvalidRange(key, start, length)
        try:
            with self._path("data", key).open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if start >= size and length > 0:
                    raise InvalidRange(key, start, length, size)
                fh.seek(start)
                return fh.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self._path("data", key)  # validate before writing anything
        tmp = self._tmp()
        tmp.write_bytes(data)
        self._publish(tmp, key, hashlib.md5(data).hexdigest(), metadata, if_absent=False)

    def put_if_absent(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> bool:
        self._path("data", key)
        tmp = self._tmp()
        tmp.write_bytes(data)
        return self._publish(tmp, key, hashlib.md5(data).hexdigest(), metadata, if_absent=True)

    def delete(self, key: str) -> None:
        self._path("data", key).unlink(missing_ok=True)
        self._path("meta", key, ".json").unlink(missing_ok=True)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        data = self.root / "data"
        keys = sorted(
            str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()
        )
        for key in keys:
            if key.startswith(prefix):
                info = self.head(key)
                if info is not None:
                    yield info

    # -- multipart ----------------------------------------------------------------------------

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        d = self.root / "uploads" / upload_id
        try:
            recorded = json.loads((d / "upload.json").read_text())
        except (FileNotFoundError, ValueError, NotADirectoryError):
            raise UploadNotFound(key, upload_id) from None
        if recorded["key"] != key:
            raise UploadNotFound(key, upload_id)
        return d

    def create_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        self._path("data", key)
        upload_id = uuid.uuid4().hex
        d = self.root / "uploads" / upload_id
        d.mkdir()
        tmp = self._tmp()
        tmp.write_text(json.dumps({"key": key, "metadata": dict(metadata or {})}))
        os.replace(tmp, d / "upload.json")
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int,
                    data: bytes | SizedReader) -> PartInfo:
        if not 1 <= number <= 10000:
            raise PermanentIngestError(f"part number {number} out of range 1..10000")
        d = self._upload_dir(key, upload_id)
        tmp = self._tmp()
        md5 = hashlib.md5()
        with tmp.open("wb") as out:
            if isinstance(data, bytes | bytearray):
                md5.update(data)
                out.write(data)
            else:
                data.seek(0)
                while chunk := data.read(_COPY_CHUNK):
                    md5.update(chunk)
                    out.write(chunk)
        os.replace(tmp, d / f"part-{number:05d}")
        return PartInfo(number=number, size=len(data), etag=md5.hexdigest())

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        d = self._upload_dir(key, upload_id)
        parts = []
        for p in sorted(d.glob("part-*")):
            h = hashlib.md5()
            with p.open("rb") as fh:
                while chunk := fh.read(_COPY_CHUNK):
                    h.update(chunk)
            parts.append(PartInfo(number=int(p.name[5:]), size=p.stat().st_size,
                                  etag=h.hexdigest()))
        return parts

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo], *, if_absent: bool = False
    ) -> bool:
        d = self._upload_dir(key, upload_id)
        metadata = json.loads((d / "upload.json").read_text())["metadata"]
        have = {p.number: p for p in self.list_parts(key, upload_id)}
        tmp = self._tmp()
        etags = hashlib.md5()
        ordered = sorted(parts, key=lambda p: p.number)
        with tmp.open("wb") as out:
            for p in ordered:
                got = have.get(p.number)
                if got is None or got.etag != p.etag:
                    tmp.unlink()
                    raise PermanentIngestError(
                        f"part {p.number} of upload {upload_id!r} missing or changed"
                    )
                with (d / f"part-{p.number:05d}").open("rb") as fh:
                    shutil.copyfileobj(fh, out, _COPY_CHUNK)
                etags.update(bytes.fromhex(p.etag))
        etag = f"{etags.hexdigest()}-{len(ordered)}"  # S3's multipart etag form
        done = self._publish(tmp, key, etag, metadata, if_absent=if_absent)
        shutil.rmtree(d, ignore_errors=True)
        return done

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            shutil.rmtree(self._upload_dir(key, upload_id), ignore_errors=True)
