"""The S3 object store adapter (boto3's botocore), for AWS S3 and self-hosted S3 servers.

The client is botocore's own: boto3's session layer and s3transfer would only add imports
(about 3 MB of memory on every agent) for helpers this adapter does not use.
Credentials come from boto3's standard chain (environment, shared profile, instance role),
never from crashfleet's configuration. Connection failures surface as
:class:`~ingest.errors.EndpointUnreachable` naming the endpoint, after the configured
connect timeout and attempts — never a hang.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import botocore.exceptions
import botocore.session
from botocore.config import Config

from ingest.errors import (
    AccessDenied,
    EndpointUnreachable,
    InvalidRange,
    ObjectNotFound,
    RetryableIngestError,
    S3AccessProblem,
    UploadNotFound,
)
from ingest.objectstore import ObjectInfo, PartInfo, SizedReader

__all__ = ["S3ObjectStore"]

_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


# Errors that last until someone fixes the bucket or the credentials.
_ACCESS_CODES = ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                 "ExpiredToken", "InvalidToken")


class S3ObjectStore:
    """Objects in one bucket of an S3 API endpoint.

    ``endpoint_url`` empty means AWS's default endpoint. ``sse`` is ``none``, ``AES256``
    (SSE-S3) or ``aws:kms`` (SSE-KMS with ``sse_kms_key_id``).
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str = "",
        region: str = "us-east-1",
        addressing_style: str = "auto",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
        sse: str = "none",
        sse_kms_key_id: str = "",
        ca_bundle: str = "",
        client: Any = None,
    ):
        if len(bucket) < 3:
            raise ValueError(f"bucket name {bucket!r} is too short (S3 needs at least 3)")
        if sse not in ("none", "AES256", "aws:kms"):
            raise ValueError(f"unknown server-side encryption {sse!r}")
        self.bucket = bucket
        self.endpoint = endpoint_url or f"s3.{region}.amazonaws.com"
        self._timeout = connect_timeout_s * max_attempts
        self._sse: dict[str, str] = {}
        if sse != "none":
            self._sse["ServerSideEncryption"] = sse
            if sse == "aws:kms" and sse_kms_key_id:
                self._sse["SSEKMSKeyId"] = sse_kms_key_id
        self._client = client or botocore.session.Session().create_client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            # TLS certificates are always verified: against a private CA when one is given.
            verify=ca_bundle or None,
            config=Config(
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                s3={"addressing_style": addressing_style},
                max_pool_connections=16,
                # Integrity comes from our own SHA-256 of the dump, checked while streaming;
                # botocore's extra CRC32 pass over every part (and its aws-chunked framing)
                # only cost CPU and buffer memory.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_settings(cls, s3: Any, *, bucket: str | None = None) -> S3ObjectStore:
        """Build from an ``S3Settings`` section (the one place settings become a client);
        ``bucket`` overrides the configured bucket (``s3://bucket/key`` on the command line)."""
        return cls(
            bucket or s3.bucket, endpoint_url=s3.endpoint_url, region=s3.region,
            addressing_style=s3.addressing_style, connect_timeout_s=s3.connect_timeout_s,
            read_timeout_s=s3.read_timeout_s, max_attempts=s3.max_attempts, sse=s3.sse,
            sse_kms_key_id=s3.sse_kms_key_id, ca_bundle=getattr(s3, "ca_bundle", ""),
        )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, op)(Bucket=self.bucket, **kwargs)
        except _NETWORK_ERRORS as exc:
            raise EndpointUnreachable("S3", self.endpoint, self._timeout, str(exc)) from exc
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable") \
                    or status >= 500:
                raise RetryableIngestError(f"S3 {op} on {self.location}: {code or status}",
                                           endpoint=self.endpoint) from exc
            if code in _ACCESS_CODES:
                raise S3AccessProblem(code, self.bucket, self.endpoint) from exc
            raise

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (for tests and the local stack)."""
        try:
            self._call("head_bucket")
        except (botocore.exceptions.ClientError, S3AccessProblem):
            self._call("create_bucket")

    # -- objects ------------------------------------------------------------------------------

    def presign_get(self, key: str, expires_s: int = 300) -> str:
        """A URL that fetches ``key`` without credentials for ``expires_s`` seconds (dump
        downloads from the web UI). Signed locally: no request is made."""
        return str(self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s))

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self._call("head_object", Key=key)
        except botocore.exceptions.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            if status == 403:
                raise AccessDenied(key, endpoint=self.endpoint) from exc
            raise
        return ObjectInfo(key=key, size=int(r["ContentLength"]), etag=r["ETag"].strip('"'),
                          metadata=dict(r.get("Metadata", {})))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise InvalidRange(key, start, length)
        if length == 0:
            return b""
        try:
            r = self._call("get_object", Key=key, Range=f"bytes={start}-{start + length - 1}")
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise ObjectNotFound(key, endpoint=self.endpoint) from exc
            if code == "InvalidRange":
                raise InvalidRange(key, start, length) from exc
            raise
        try:
            data: bytes = r["Body"].read()
        except _NETWORK_ERRORS as exc:
            raise EndpointUnreachable("S3", self.endpoint, self._timeout, str(exc)) from exc
        return data

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self._call("put_object", Key=key, Body=data, Metadata=dict(metadata or {}), **self._sse)

    def put_if_absent(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> bool:
        try:
            self._call("put_object", Key=key, Body=data, Metadata=dict(metadata or {}),
                       IfNoneMatch="*", **self._sse)
        except botocore.exceptions.ClientError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            r = self._call("list_objects_v2", **kwargs)
            for item in r.get("Contents", []):
                yield ObjectInfo(key=item["Key"], size=int(item["Size"]),
                                 etag=item.get("ETag", "").strip('"'))
            if not r.get("IsTruncated"):
                return
            token = r["NextContinuationToken"]

    # -- multipart ----------------------------------------------------------------------------

    def create_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        r = self._call("create_multipart_upload", Key=key, Metadata=dict(metadata or {}),
                       **self._sse)
        return str(r["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int,
                    data: bytes | SizedReader) -> PartInfo:
        try:
            r = self._call("upload_part", Key=key, UploadId=upload_id, PartNumber=number,
                           Body=data, ContentLength=len(data))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                raise UploadNotFound(key, upload_id) from exc
            raise
        return PartInfo(number=number, size=len(data), etag=r["ETag"].strip('"'))

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = []
        marker = 0
        while True:
            try:
                r = self._call("list_parts", Key=key, UploadId=upload_id,
                               PartNumberMarker=marker)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                    raise UploadNotFound(key, upload_id) from exc
                raise
            for p in r.get("Parts", []):
                parts.append(PartInfo(number=int(p["PartNumber"]), size=int(p["Size"]),
                                      etag=p["ETag"].strip('"')))
            if not r.get("IsTruncated"):
                return sorted(parts, key=lambda p: p.number)
            marker = int(r["NextPartNumberMarker"])

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo], *, if_absent: bool = False
    ) -> bool:
        body = {"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'}
                          for p in sorted(parts, key=lambda p: p.number)]}
        extra: dict[str, str] = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._call("complete_multipart_upload", Key=key, UploadId=upload_id,
                       MultipartUpload=body, **extra)
        except botocore.exceptions.ClientError as exc:
            if if_absent and _precondition_failed(exc):
                self.abort_multipart(key, upload_id)
                return False
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                raise UploadNotFound(key, upload_id) from exc
            raise
        return True

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                raise


def _precondition_failed(exc: botocore.exceptions.ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)
