"""Prometheus metrics, served on their own port (``metrics_listen``).

A private registry (not the process-global default) so that several servers in
one process, as in tests, never collide on metric names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc_total = Counter(
            "mesh_rpc_total",
            "RPCs handled, by full method name and status code.",
            ("method", "code"),
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "mesh_rpc_duration_seconds",
            "RPC latency in seconds, by full method name.",
            ("method",),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registrations = Counter(
            "mesh_registrations_total",
            "Successful Register calls, by outcome (created, retry, reregistered).",
            ("outcome",),
            registry=self.registry,
        )
        self.svids_issued = Counter(
            "mesh_svids_issued_total",
            "SVIDs issued, by kind (x509, jwt).",
            ("kind",),
            registry=self.registry,
        )
        self.serving_cert_expiry = Gauge(
            "mesh_serving_certificate_expiry_timestamp_seconds",
            "When the registry's current serving certificate expires (Unix time).",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        # Label lookups cost more than the increment: keep the children.
        key = (method, code)
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self.rpc_total.labels(method, code)
        counter.inc()
        timer = self._timers.get(method)
        if timer is None:
            timer = self._timers[method] = self.rpc_seconds.labels(method)
        timer.observe(seconds)

    def watch_store(self, store: Any) -> None:
        """Export ``store``'s group-commit counters (read at each scrape)."""
        self.registry.register(_GroupCommitCollector(store))

    def serve(self, host: str, port: int) -> tuple[object, object]:
        """Start the HTTP endpoint in a background thread; returns (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)


class _GroupCommitCollector(Collector):
    """The store's group commits: how many, how full, how often a call fell back
    to its own savepoint. Calls per group is what a commit's cost is shared by."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        stats = self._store.group_stats
        counters = (
            ("mesh_store_group_commits", "Group-commit transactions.", stats.groups),
            ("mesh_store_group_calls", "Writes carried by group commits.", stats.calls),
            ("mesh_store_group_batched_items",
             "Batch items written by one set-based statement per table.", stats.batched),
            ("mesh_store_group_one_by_one_calls",
             "Writes run in their own savepoint (plain writes, refused batch items).",
             stats.one_by_one),
            ("mesh_store_group_failed_commits",
             "Group transactions that failed as a whole.", stats.failed_groups),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value=value)
        yield GaugeMetricFamily(
            "mesh_store_group_largest_calls", "The largest group so far.", value=stats.largest
        )
