from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crashfleet.stack import StackInfo
from ingest import LocalObjectStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    from ingest.s3 import S3ObjectStore

    services: StackInfo = request.getfixturevalue("services")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket, endpoint_url=services.s3_endpoint, addressing_style="path")
