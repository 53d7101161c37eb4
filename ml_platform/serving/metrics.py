"""Prometheus metrics of the endpoint: requests, errors and latency by model, version and route.

Each app has its own registry (not the process-global one), so metrics of one app never
leak into another in the same process. With several server workers each worker counts
its own requests; Prometheus sums them over the scrape targets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# The *_created series double the scrape for a timestamp Prometheus does not use.
disable_created_metrics()

# Latency buckets for an in-memory model: most requests take milliseconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["model", "version", "route"]
        self.requests = Counter(
            "ml_platform_requests", "HTTP requests by model, serving version and route", [*labels, "status"],
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "ml_platform_request_errors", "Requests answered with an error status", [*labels, "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "ml_platform_request_latency_seconds", "Request latency", labels, buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.predictions = Counter(
            "ml_platform_predictions", "Records scored, by the version and release route that scored them",
            ["model", "version", "release_route"], registry=self.registry,
        )  # fmt: skip
        self.served = Gauge(
            "ml_platform_served_version", "1 for each version the endpoint serves, by alias",
            ["model", "alias", "version"], registry=self.registry,
        )  # fmt: skip
        self.refused = Counter(
            "ml_platform_refused_versions", "Versions the registry named that the endpoint refused to serve, by reason",
            ["model", "version", "reason"], registry=self.registry,
        )  # fmt: skip

    def observe(self, model: str, version: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, route, str(status)).inc()
        if status >= 400:
            self.errors.labels(model, version, route, str(status)).inc()
        self.latency.labels(model, version, route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
