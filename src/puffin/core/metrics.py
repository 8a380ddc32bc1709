"""Prometheus metrics owned by the application, never module globals."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class HttpMetrics:
    """Request counts and latencies by route template and status."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "puffin_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "puffin_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
