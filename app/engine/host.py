"""ModelHost: every listed model on one device, loaded, warmed and batched, or why it is not.

Both layouts run one: the model-owner process (shared by every frontend worker) and each
frontend worker that keeps a copy of its own.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from app.config import Settings
from app.engine.batching import BatchStats, DynamicBatcher, ModelThread
from app.engine.predictor import Predictor
from app.failures import Failure
from app.metrics import Metrics
from app.serving.catalog import CheckpointInfo, Loaded, Served, Unavailable
from models.checkpoint import CheckpointError, load_checkpoint
from models.framing import DIGIT_SHAPE
from models.registry import get_input_spec, get_model, list_models
from models.runtime import inference_dtype, resolve_device
from models.weights import checkpoint_path

log = logging.getLogger(__name__)


def shown(path: Path) -> str:
    """A path as anyone may see it: relative to the working directory, or named by the setting
    it comes from; never the absolute path of this host."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"$WEIGHTS_DIR/{path.name}"


def train_command(name: str, weights_dir: Path) -> str:
    """The command that makes a model's checkpoint, as the README runs it from the repository
    root (MNIST in ../shared/data, downloaded there when the network allows)."""
    out = shown(checkpoint_path(name, weights_dir))
    return f"python -m models.train --model {name} --data-dir ../shared/data --out {out}"


def model_names(settings: Settings) -> list[str]:
    """The models this service lists: MODELS if set, else every registered one."""
    known = list_models()
    unknown = [m for m in settings.models if m not in known]
    if unknown:
        raise ValueError(f"MODELS names unknown models {unknown}; known: {', '.join(known)}")
    return list(settings.models) or known


def _parameters(name: str) -> int:
    """The model's parameter count, built on the meta device: no memory, no weights."""
    with torch.device("meta"):
        return sum(p.numel() for p in get_model(name).parameters())


@dataclass
class Hosted:
    """A loaded model: its public record, its model call and its batcher."""

    card: Loaded
    predictor: Predictor
    batcher: DynamicBatcher


def _observers(
    metrics: Metrics, name: str
) -> tuple[Callable[[BatchStats], None], Callable[[int], None]]:
    """The batcher's hooks into the metrics: per batch, and on each queue-depth change."""

    def on_batch(stats: BatchStats) -> None:
        metrics.batch_size.labels(name).observe(stats.size)
        metrics.inference.labels(name).observe(stats.inference_s)
        for wait in stats.queue_waits:
            metrics.queue_wait.labels(name).observe(wait)

    return on_batch, metrics.queue_depth.labels(name).set


def load_one(
    name: str,
    settings: Settings,
    device: torch.device,
    metrics: Metrics,
    on_depth: Callable[[str, int], None] | None = None,
    thread: ModelThread | None = None,
) -> Hosted | Unavailable:
    """Load, validate, place and warm one model; never raises for a bad checkpoint."""
    path = checkpoint_path(name, settings.weights_dir)
    spec = get_input_spec(name).as_tuple()
    parameters = _parameters(name)

    def unavailable(status: str, reason: str) -> Unavailable:
        return Unavailable(name, parameters, spec, status, reason)  # type: ignore[arg-type]

    if not path.is_file():
        make = train_command(name, settings.weights_dir)
        return unavailable("missing", f"no checkpoint {path.name}; make it with: {make}")
    started = time.perf_counter()
    try:
        ckpt = load_checkpoint(path, expect_architecture=name)
    except CheckpointError as exc:
        log.error("refusing %s: %s", name, exc)
        remake = train_command(name, settings.weights_dir)
        reason = str(exc).replace(str(path), path.name)  # the log has the full path
        return unavailable("invalid", f"{reason}; remake it with: {remake}")
    dtype = inference_dtype(device, settings.dtype)
    try:
        predictor = Predictor(ckpt, device, dtype, settings.max_batch_size)
        if settings.warmup:
            for n in sorted({1, settings.max_batch_size}):
                predictor(torch.randint(0, 256, (n, 1, *DIGIT_SHAPE), dtype=torch.uint8))
            if chosen := predictor.calibrate():
                log.info("%s on %s: %s", name, device, chosen)
    except Exception:  # a model that cannot run on this device must not stop the others
        log.exception("could not start %s on %s", name, device)
        return unavailable("failed", f"could not start on {device} (the log has why)")
    on_batch, gauge = _observers(metrics, name)

    def depth(n: int) -> None:
        gauge(n)
        if on_depth is not None:
            on_depth(name, n)

    batcher = DynamicBatcher(
        predictor.launch,
        name=name,
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_batch_delay_ms / 1000,
        max_queue=settings.max_queue,
        depth=predictor.depth,
        thread=thread,
        on_batch=on_batch,
        on_depth=depth,
    )
    meta = ckpt.meta
    card = Loaded(
        name=name,
        parameters=parameters,
        input=spec,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        labels=tuple(meta.labels),
        test_accuracy=meta.test_accuracy,
        test_loss=meta.test_loss,
        max_batch_size=settings.max_batch_size,
        checkpoint=CheckpointInfo(
            path=path.name,  # relative to the weights folder: no host paths to anonymous callers
            sha256=ckpt.file_sha256,
            created_at=meta.created_at,
            train_command=meta.train_command,
            torch_version=meta.torch_version,
            dataset_fingerprint=meta.dataset_fingerprint,
        ),
    )
    log.info("loaded %s on %s (%s) in %.2f s", name, device, dtype, time.perf_counter() - started)
    return Hosted(card, predictor, batcher)


class ModelHost:
    """The models of one device; built by :meth:`start` on a running event loop."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.catalog: dict[str, Served] = {}
        self.hosted: dict[str, Hosted] = {}
        # On the CPU every model runs in one thread: they share the cores anyway, and the
        # small-batch placement switches oneDNN off process-wide for its calls. On CUDA each
        # model has its own thread, so one's launches do not wait behind another's.
        self.thread = ModelThread("models-cpu") if device.type == "cpu" else None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        metrics: Metrics,
        torch_threads: int,
        on_depth: Callable[[str, int], None] | None = None,
    ) -> "ModelHost":
        """Load every listed model (one at a time, off the event loop), then start batching.

        ``on_depth(name, images)`` hears of every change of a model's queue depth.
        """
        host = cls(resolve_device(settings.device))
        if host.device.type == "cpu":
            torch.set_num_threads(torch_threads)
        for name in model_names(settings):
            result = await asyncio.to_thread(
                load_one, name, settings, host.device, metrics, on_depth, host.thread
            )
            if isinstance(result, Hosted):
                host.hosted[name] = result
                host.catalog[name] = result.card
                result.batcher.start()
            else:
                host.catalog[name] = result
        loaded = list(host.hosted)
        log.info("models on %s: %s", host.device, ", ".join(loaded) or "none loaded")
        return host

    def enqueue(self, name: str, digits: Tensor) -> "asyncio.Future[Tensor]":
        """Queue N x 1 x 28 x 28 uint8 digits for ``name``; the future holds N probability rows."""
        hosted = self.hosted.get(name)
        if hosted is None:
            raise Failure.SHUTTING_DOWN.error(f"model {name!r} is not loaded here")
        return hosted.batcher.enqueue(digits)

    def queued(self, name: str) -> int:
        """Images waiting for ``name``'s next batches."""
        hosted = self.hosted.get(name)
        return hosted.batcher.queued_images if hosted else 0

    async def stop(self) -> None:
        """Refuse new work and finish every accepted image."""
        await asyncio.gather(*(h.batcher.stop() for h in self.hosted.values()))
        if self.thread is not None:
            self.thread.stop()
