"""Prometheus metrics, one registry per app so several apps can live in one process.

Under ``python -m app`` several processes serve (frontend workers, the model owner), so the
launcher sets PROMETHEUS_MULTIPROC_DIR and prometheus_client keeps every process's values in
files there; ``/metrics`` then adds them up over all processes, whichever worker answers.

The request and image counters and the queue depth carry a ``version`` label: the version that
answered (``_unknown`` for a request that reached none). Only versions in the catalogue are
shown, and each process forgets the series of versions that left it (:meth:`Metrics.keep_only`).
The histograms stay per model: under ``python -m app`` prometheus_client keeps every value it
ever made in memory (its multi-process mode cannot forget one), and with a version label on the
histograms, 16 values each, every reloaded version cost a worker about 130 KB for good; the
counters and the gauge cost a few values a version.
"""

import os
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.layout import MULTIPROCESS_ENV

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from app.engine.batching import BatchStats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN = "_unknown"  # the model or version label of a request that reached no listed one


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
            "Prediction requests by model, HTTP status and the version that answered",
            ["model", "status", "version"],
            registry=r,
        )
        self.images = Counter(
            "zoo_images",
            "Images in prediction requests by model, status and version",
            ["model", "status", "version"],
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
            "zoo_batch_size",
            "Images per model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "zoo_queue_depth",
            "Images waiting in the queue of a version of a model",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )

    def keep_only(self, live: Collection[tuple[str, str]]) -> None:
        """Forget this process's series of versions not in ``live`` (model, version): one set of
        children per version would otherwise pile up, reload after reload."""
        for metric in (self.requests, self.images, self.queue_depth):
            gone: set[tuple[str, ...]] = set()
            for family in metric.collect():
                for sample in family.samples:
                    labels = sample.labels  # as .labels() takes them: model, [status,] version
                    model, version = labels["model"], labels["version"]
                    if version != UNKNOWN and (model, version) not in live:
                        gone.add((model, labels["status"], version) if "status" in labels
                                 else (model, version))  # fmt: skip
            for values in gone:
                metric.remove(*values)

    def batcher_hooks(
        self, name: str, version: int
    ) -> tuple[Callable[["BatchStats"], None], Callable[[int], None]]:
        """A batcher's hooks into the metrics: per batch, and on each queue-depth change."""
        batch_size, inference = self.batch_size.labels(name), self.inference.labels(name)
        queue_wait = self.queue_wait.labels(name)

        def on_batch(stats: "BatchStats") -> None:
            batch_size.observe(stats.size)
            inference.observe(stats.inference_s)
            for wait in stats.queue_waits:
                queue_wait.observe(wait)

        return on_batch, self.queue_depth.labels(name, str(version)).set

    def exposition(self, live: Collection[tuple[str, str]] | None = None) -> bytes:
        """The Prometheus text of this process, or of every process of the service; with
        ``live``, per-version series only of those (model, version) pairs (and _unknown)."""
        registry = self.registry
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        if live is None:
            return generate_latest(registry)
        return generate_latest(_Only(registry, set(live)))


class _Only:
    """A registry's samples, less those of versions no longer in the catalogue."""

    def __init__(self, source: CollectorRegistry, live: set[tuple[str, str]]) -> None:
        self.source, self.live = source, live

    def collect(self) -> Iterator["Metric"]:
        for family in self.source.collect():
            family.samples = [
                s
                for s in family.samples
                if s.labels.get("version", UNKNOWN) == UNKNOWN
                or (s.labels.get("model", ""), s.labels["version"]) in self.live
            ]
            yield family
