"""Prometheus metrics, served on their own port (``metrics_listen``).

A private registry (not the process-global default) so that several servers in
one process, as in tests, never collide on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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

    def serve(self, host: str, port: int) -> tuple[object, object]:
        """Start the HTTP endpoint in a background thread; returns (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)
