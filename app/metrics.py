"""Prometheus metrics, one registry per app so several apps can live in one process.

Under ``python -m app`` several processes serve (frontend workers, the model owner), so the
launcher sets PROMETHEUS_MULTIPROC_DIR and prometheus_client keeps every process's values in
files there; ``/metrics`` then adds them up over all processes, whichever worker answers.
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.layout import MULTIPROCESS_ENV

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def multiprocess_dir() -> str | None:
    """The folder where every process of this service writes its metrics, if there is one."""
    return os.environ.get(MULTIPROCESS_ENV) or None


def mark_process_dead(pid: int | None = None) -> None:
    """Drop a stopped process's live gauges (queue depth) from the multi-process totals."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid())


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "zoo_requests",
            "Prediction requests by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.images = Counter(
            "zoo_images",
            "Images in prediction requests by model and status",
            ["model", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "zoo_request_latency_seconds",
            "Prediction request latency, receive to response",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "zoo_queue_wait_seconds",
            "Time a request's images wait in the queue for their batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "zoo_inference_seconds",
            "Model call time per batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "zoo_batch_size", "Images per model call", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "zoo_queue_depth",
            "Images waiting in a model's queue",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every process of the service."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
