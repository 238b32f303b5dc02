"""The agent's Prometheus metrics: a fixed list, registered on a registry passed in.

Exported on an optional ``/metrics`` port and as a node_exporter textfile (written atomically
by prometheus-client: a temporary file renamed into place).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

__all__ = ["AgentMetrics"]


class AgentMetrics:
    """All metrics of one agent process."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.detected = Counter("crashfleet_agent_dumps_detected_total",
                                "Finished dumps detected.", registry=registry)
        self.shipped = Counter("crashfleet_agent_dumps_shipped_total",
                               "Dumps stored and announced by an acknowledged event.",
                               registry=registry)
        self.bytes_uploaded = Counter("crashfleet_agent_uploaded_bytes_total",
                                      "Bytes sent to the object store.", registry=registry)
        self.failures = Counter("crashfleet_agent_failures_total",
                                "Failed attempts, by stage (upload, publish, read, scan, journal).",
                                ["stage"], registry=registry)
        self.refused = Counter("crashfleet_agent_refused_total",
                               "Files refused (symbolic links, hard links, wrong owner or "
                               "mode, names that cannot be shipped).", registry=registry)
        self.skipped = Counter("crashfleet_agent_listing_skipped_total",
                               "Directory entries left out of a scan, by kind: junk (cannot "
                               "be a dump), deferred (beyond the bound, reached by a later "
                               "scan), unread (past the listing bound).", ["kind"],
                               registry=registry)
        self.backlog = Gauge("crashfleet_agent_backlog",
                             "Work waiting: dumps not yet uploaded, events not yet sent.",
                             ["kind"], registry=registry)
        self.last_success = Gauge("crashfleet_agent_last_success_timestamp_seconds",
                                  "When a dump was last shipped (Unix time).",
                                  registry=registry)
        for stage in ("upload", "publish", "read", "scan", "journal"):
            self.failures.labels(stage=stage)
        for kind in ("dumps", "events"):
            self.backlog.labels(kind=kind)
        for kind in ("junk", "deferred", "unread"):
            self.skipped.labels(kind=kind)

    def write_textfile(self, path: str) -> None:
        """Write all metrics to ``path`` atomically (for node_exporter's textfile collector)."""
        write_to_textfile(path, self.registry)
