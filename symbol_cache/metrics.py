"""The symbol cache's Prometheus metrics, registered on a registry the caller passes in.

Names (fixed list): ``crashfleet_symbols_lookups_total{tier,result}`` (tier: memory, disk,
shared; result: hit, miss, corrupt), ``crashfleet_symbols_fetches_total{source,result}``
(result: ok, missing, error), ``crashfleet_symbols_fetched_bytes_total{source}``,
``crashfleet_symbols_builds_total{result}``, ``crashfleet_symbols_build_seconds``
(histogram), ``crashfleet_symbols_disk_bytes`` (gauge).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SymbolMetrics"]


class SymbolMetrics:
    """All metrics of one cache; labels stay bounded (tiers and source kinds are fixed)."""

    def __init__(self, registry: CollectorRegistry | None):
        reg = registry
        self.lookups = Counter("crashfleet_symbols_lookups", "Pack lookups per tier and result.",
                               ["tier", "result"], registry=reg)
        self.fetches = Counter("crashfleet_symbols_fetches", "Source fetch attempts.",
                               ["source", "result"], registry=reg)
        self.fetched_bytes = Counter("crashfleet_symbols_fetched_bytes",
                                     "Bytes downloaded from sources.", ["source"], registry=reg)
        self.builds = Counter("crashfleet_symbols_builds", "Pack builds.", ["result"],
                              registry=reg)
        self.build_seconds = Histogram(
            "crashfleet_symbols_build_seconds", "Seconds to build a pack from a vmlinux.",
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120), registry=reg)
        self.disk_bytes = Gauge("crashfleet_symbols_disk_bytes",
                                "Bytes of packs in the local disk tier.", registry=reg)
