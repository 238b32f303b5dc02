"""One analyzer process for the single-flight test (run as a script, not collected by pytest).

Usage: symbols_worker.py START_FILE WORKDIR S3_ENDPOINT BUCKET DEBUGINFOD_URL BUILD_ID
Waits until START_FILE exists (all workers start together), asks its own cache (own disk tier,
shared S3 tier, the real debuginfod as source) for BUILD_ID and prints one JSON line: its
fetch and build counts from its own metrics registry and the SHA-256 of the pack it got.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from ingest.s3 import S3ObjectStore
from symbol_cache.cache import SymbolCache
from symbol_cache.metrics import SymbolMetrics
from symbol_cache.pack import encode_pack
from symbol_cache.sources import DebuginfodSource
from symbol_cache.tiers import DiskTier, SharedTier


def main() -> None:
    start, work, endpoint, bucket, url, build_id = sys.argv[1:7]
    reg = CollectorRegistry()
    store = S3ObjectStore(bucket, endpoint_url=endpoint, addressing_style="path")
    cache = SymbolCache(
        sources=[DebuginfodSource([url], Path(work) / "downloads", timeout_s=120)],
        disk=DiskTier(Path(work) / "disk", 1 << 30), shared=SharedTier(store),
        metrics=SymbolMetrics(reg), workdir=Path(work) / "tmp", poll_s=0.2,
        wait_timeout_s=400)
    while not Path(start).exists():
        time.sleep(0.01)
    pack = cache.get(build_id)

    def count(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, labels) or 0.0

    print(json.dumps({
        "fetches": count("crashfleet_symbols_fetches_total", source="debuginfod", result="ok"),
        "builds": count("crashfleet_symbols_builds_total", result="ok"),
        "shared_hits": count("crashfleet_symbols_lookups_total", tier="shared", result="hit"),
        "sha256": hashlib.sha256(encode_pack(pack)).hexdigest(),
    }))


if __name__ == "__main__":
    main()
