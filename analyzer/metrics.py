"""The analyzer's metrics: process-local instruments plus a scrape-time collector that reads
the counts from the store, so several analyzer replicas never disagree.

Label cardinality is bounded: clusters, kernels and use-after-unload modules beyond the top K
(``analyzer.top_clusters``) are summed as ``other``; panic classes, taint flags and
architectures are small fixed vocabularies. A scrape reads sums from the database, never one
row per cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.health import AssignmentWatch, DependencyHealth
from store import CrashStore

__all__ = ["METRIC_NAMES", "AnalyzerMetrics", "StoreCollector"]

# Every metric the analyzer exports (dashboards and alert rules are checked against this).
METRIC_NAMES = (
    "crashfleet_crashes_total",
    "crashfleet_crashes_by_taint_flag_total",
    "crashfleet_crashes_by_kernel_total",
    "crashfleet_crashes_by_arch_total",
    "crashfleet_cluster_crashes_total",
    "crashfleet_cluster_info",
    "crashfleet_signatures",
    "crashfleet_clusters",
    "crashfleet_taint_sets",
    "crashfleet_taint_flags_seen",
    "crashfleet_module_unload_crashes_total",
    "crashfleet_failed_events",
    "crashfleet_dead_lettered_events",
    "crashfleet_regressed_clusters",
    "crashfleet_analyzer_events_total",
    "crashfleet_analyzer_analysis_seconds",
    "crashfleet_analyzer_consumer_lag",
    "crashfleet_analyzer_last_success_timestamp_seconds",
    "crashfleet_analyzer_dependency_up",
)


def _counter(name: str, doc: str, label: str,
             items: Iterable[tuple[str, float]]) -> CounterMetricFamily:
    """A counter family with one label, one sample per ``(label value, count)``."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in items:
        family.add_metric([value], n)
    return family


class StoreCollector(Collector):
    """Reads the store when Prometheus scrapes."""

    def __init__(self, store: CrashStore, top_k: int = 20):
        self.store = store
        self.top_k = top_k

    def collect(self) -> Iterator[Metric]:
        st = self.store.stats(top_clusters=self.top_k)
        yield _counter("crashfleet_crashes", "Crashes stored, by panic class.", "panic_class",
                       sorted(st.crashes_by_class.items()))
        yield _counter("crashfleet_crashes_by_taint_flag",
                       "Crashes whose kernel carried each taint flag.", "flag",
                       sorted(st.crashes_by_taint_flag.items()))
        ranked = sorted(st.crashes_by_kernel.items(), key=lambda kv: (-kv[1], kv[0]))
        rest = [("other", sum(n for _, n in ranked[self.top_k:]))] \
            if len(ranked) > self.top_k else []
        yield _counter("crashfleet_crashes_by_kernel",
                       "Crashes by kernel release (top K, rest as other).", "kernel",
                       ranked[: self.top_k] + rest)
        yield _counter("crashfleet_cluster_crashes", "Crashes per cluster (top K, rest as other).",
                       "cluster", st.crashes_by_cluster.items())
        info = GaugeMetricFamily("crashfleet_cluster_info",
                                 "Signature text of the top clusters (value 1).",
                                 labels=["cluster", "signature"])
        for cid, text in st.cluster_signatures.items():
            info.add_metric([cid, text], 1)
        yield info
        yield _counter("crashfleet_crashes_by_arch",
                       "Crashes by CPU architecture (x86_64, arm64, unknown).", "arch",
                       sorted(st.crashes_by_arch.items()))
        yield _counter("crashfleet_module_unload_crashes",
                       "Crashes with a use-after-module-unload finding, by module.", "module",
                       sorted(st.module_unload_by_module.items()))
        for name, doc, value in (
            ("crashfleet_signatures", "Distinct crash signatures seen by the fleet.",
             st.signatures),
            ("crashfleet_clusters", "Distinct crash clusters.", st.clusters),
            ("crashfleet_taint_sets", "Distinct taint flag combinations seen.", st.taint_sets),
            ("crashfleet_taint_flags_seen", "Distinct taint flags seen.",
             len(st.crashes_by_taint_flag)),
            ("crashfleet_failed_events", "Events that failed analysis at least once.",
             st.failures),
            ("crashfleet_dead_lettered_events", "Events sent to the dead-letter topic.",
             st.dead_lettered),
            ("crashfleet_regressed_clusters",
             "Clusters marked fixed that crashed again on a kernel at or after the fix.",
             st.regressed),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class AnalyzerMetrics:
    """Process-local instruments of one analyzer worker."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.events = Counter("crashfleet_analyzer_events", "Events handled, by outcome.",
                              ["outcome"], registry=registry)
        for outcome in ("stored", "duplicate", "retried", "dead_lettered"):
            self.events.labels(outcome=outcome)
        self.seconds = Histogram("crashfleet_analyzer_analysis_seconds",
                                 "Time to analyze one dump.",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                                 registry=registry)
        self.lag = Gauge("crashfleet_analyzer_consumer_lag",
                         "Records waiting in this worker's partitions.", registry=registry)
        self.last_success = Gauge("crashfleet_analyzer_last_success_timestamp_seconds",
                                  "When this worker last stored a crash (Unix time).",
                                  registry=registry)
        self.health = DependencyHealth(registry)
        self.assignment = AssignmentWatch(registry, alarm_s=60.0)
