"""Errors of the ingest adapters, split into retryable and permanent.

Callers decide by the ``retryable`` attribute (``foundation.errors.is_retryable``): a
:class:`RetryableIngestError` means "try again later" (an endpoint is down, a request timed
out); a :class:`PermanentIngestError` means retrying the same call cannot succeed (an object is
missing, a range is invalid).
"""

from __future__ import annotations

from foundation.errors import CrashfleetError

__all__ = [
    "AccessDenied",
    "EndpointUnreachable",
    "IngestError",
    "InvalidRange",
    "ObjectNotFound",
    "PermanentIngestError",
    "RetryableIngestError",
    "S3AccessProblem",
    "UploadNotFound",
]


class IngestError(CrashfleetError):
    """Base of all ingest errors; ``endpoint`` names the service involved."""

    def __init__(self, message: str, *, endpoint: str | None = None):
        self.endpoint = endpoint
        super().__init__(message)


class RetryableIngestError(IngestError):
    """The operation may succeed if tried again later."""

    retryable = True


class PermanentIngestError(IngestError):
    """The same operation will fail again."""


class EndpointUnreachable(RetryableIngestError):
    """A broker or S3 endpoint did not answer within the configured timeout."""

    def __init__(self, service: str, endpoint: str, timeout_s: float, detail: str = ""):
        self.service = service
        self.timeout_s = timeout_s
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"{service} endpoint {endpoint} unreachable within {timeout_s:g}s{extra}",
            endpoint=endpoint,
        )


class ObjectNotFound(PermanentIngestError):
    """No object at ``key``."""

    def __init__(self, key: str, *, endpoint: str | None = None):
        self.key = key
        super().__init__(f"no object at key {key!r}", endpoint=endpoint)


class InvalidRange(PermanentIngestError):
    """A ranged read outside the object."""

    def __init__(self, key: str, start: int, length: int, size: int | None = None):
        self.key, self.start, self.length, self.size = key, start, length, size
        where = f" (object size {size})" if size is not None else ""
        super().__init__(f"invalid range start={start} length={length} for {key!r}{where}")


class UploadNotFound(PermanentIngestError):
    """A multipart upload id that the store does not know (completed, aborted or expired)."""

    def __init__(self, key: str, upload_id: str):
        self.key, self.upload_id = key, upload_id
        super().__init__(f"multipart upload {upload_id!r} for {key!r} not found")


class AccessDenied(PermanentIngestError):
    """The credentials may not do this. A write-only principal (the agent's S3 policy: put
    under its prefix, read nothing) gets it for a HEAD of a key, present or not."""

    def __init__(self, key: str, *, endpoint: str | None = None):
        self.key = key
        super().__init__(f"access denied to key {key!r}", endpoint=endpoint)


class S3AccessProblem(RetryableIngestError):
    """The bucket is missing or the credentials are refused: a configuration problem that
    lasts until someone fixes it, so work waits (nothing is dead-lettered or dropped) and
    the message names the setting and what to do. ``code`` is S3's error code."""

    def __init__(self, code: str, bucket: str, endpoint: str):
        self.code = code
        self.bucket = bucket
        if code == "NoSuchBucket":
            what = (f"S3 bucket {bucket!r} does not exist at {endpoint}: create it "
                    "(crashfleet stack up does, locally) or fix s3.bucket")
        else:
            what = (f"S3 at {endpoint} refused access to bucket {bucket!r} ({code}): check the "
                    "credentials (boto3's chain: AWS_ACCESS_KEY_ID, ~/.aws, instance role), "
                    "the bucket policy and s3.bucket")
        super().__init__(what, endpoint=endpoint)
