"""Prometheus metrics, on a registry of the app's own (two apps in one process count apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("atelier_http_requests", "HTTP requests handled", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("atelier_http_request_duration_seconds", "Time to answer a request",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.queue_depth = Gauge("atelier_queue_depth", "Model jobs waiting or running", registry=self.registry)
        self.busy = Counter("atelier_model_busy_seconds", "Time the model worker spent running jobs",
                            registry=self.registry)
        self.batch_size = Histogram("atelier_job_batch_size", "Jobs run together in one pipeline call",
                                    registry=self.registry, buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))
        self.images = Counter("atelier_images", "Images made", ["task"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
