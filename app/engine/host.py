"""ModelHost: every listed model on one device, loaded, warmed and batched, or why it is not.

Both layouts run one: the model-owner process (shared by every frontend worker) and each
frontend worker that keeps a copy of its own. A model is placed and warmed in the model thread
that will run its batches (CUDA's cuBLAS and cuDNN handles are made per thread). If the device
is lost (app/engine/batching.py, DeviceLost), the host says so once through ``on_lost``: the
process that holds it cannot serve any more and ends.
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
from app.engine.batching import BatchStats, DeviceLost, DynamicBatcher, ModelThread
from app.engine.predictor import Predictor
from app.failures import Failure
from app.metrics import Metrics
from app.serving.catalog import CheckpointInfo, Loaded, Reason, Served, Unavailable
from models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from models.registry import get_input_spec, get_model, list_models
from models.runtime import inference_dtype, resolve_device, set_tf32
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


def _unavailable(name: str, status: Reason, reason: str) -> Unavailable:
    return Unavailable(name, _parameters(name), get_input_spec(name).as_tuple(), status, reason)


def checkpoint_of(name: str, settings: Settings) -> LoadedCheckpoint | Unavailable:
    """Load and validate ``name``'s checkpoint, or say why not and what would make one."""
    path = checkpoint_path(name, settings.weights_dir)
    if not path.is_file():
        make = train_command(name, settings.weights_dir)
        return _unavailable(name, "missing", f"no checkpoint {path.name}; make it with: {make}")
    try:
        return load_checkpoint(path, expect_architecture=name)
    except CheckpointError as exc:
        log.error("refusing %s: %s", name, exc)
        remake = train_command(name, settings.weights_dir)
        reason = str(exc).replace(str(path), path.name)  # the log has the full path
        return _unavailable(name, "invalid", f"{reason}; remake it with: {remake}")


def place_and_warm(
    name: str, ckpt: LoadedCheckpoint, device: torch.device, settings: Settings
) -> Predictor:
    """The model on its device in its serving dtype, warmed; run it in its model thread."""
    dtype = inference_dtype(device, settings.dtype)
    predictor = Predictor(ckpt, device, dtype, settings.max_batch_size)
    if settings.warmup and (chosen := predictor.warm_up()):
        log.info("%s on %s: %s", name, device, chosen)
    return predictor


def card(name: str, ckpt: LoadedCheckpoint, predictor: Predictor, settings: Settings) -> Loaded:
    """The public record of a loaded model."""
    meta = ckpt.meta
    return Loaded(
        name=name,
        parameters=_parameters(name),
        input=get_input_spec(name).as_tuple(),
        device=str(predictor.device),
        dtype=str(predictor.dtype).removeprefix("torch."),
        labels=tuple(meta.labels),
        test_accuracy=meta.test_accuracy,
        test_loss=meta.test_loss,
        max_batch_size=settings.max_batch_size,
        checkpoint=CheckpointInfo(
            path=ckpt.path.name,  # relative to the weights folder: no host paths to anyone
            sha256=ckpt.file_sha256,
            created_at=meta.created_at,
            train_command=meta.train_command,
            torch_version=meta.torch_version,
            dataset_fingerprint=meta.dataset_fingerprint,
        ),
    )


class ModelHost:
    """The models of one device; built by :meth:`start` on a running event loop."""

    def __init__(
        self, device: torch.device, on_lost: Callable[[DeviceLost], None] | None = None
    ) -> None:
        self.device = device
        self.catalog: dict[str, Served] = {}
        self.hosted: dict[str, Hosted] = {}
        self.lost: DeviceLost | None = None
        self._on_lost = on_lost
        # On the CPU every model runs in one thread: they share the cores anyway, and the
        # small-batch placement switches oneDNN off process-wide for its calls. On CUDA each
        # model has its own thread, so one's launches do not wait behind another's.
        self.cpu_thread = ModelThread("models-cpu") if device.type == "cpu" else None
        self.threads = [self.cpu_thread] if self.cpu_thread else []

    @classmethod
    async def start(
        cls,
        settings: Settings,
        metrics: Metrics,
        torch_threads: int,
        on_depth: Callable[[str, int], None] | None = None,
        on_lost: Callable[[DeviceLost], None] | None = None,
    ) -> "ModelHost":
        """Load every listed model (one at a time, off the event loop), then start batching.

        ``on_depth(name, images)`` hears of every change of a model's queue depth, ``on_lost``
        that the device failed for good.
        """
        host = cls(resolve_device(settings.device), on_lost)
        # On CUDA too: idle OpenMP threads of a bigger pool would spin on the frontends' cores.
        torch.set_num_threads(torch_threads)
        if host.device.type == "cuda":
            set_tf32(False)  # DTYPE=float32 means float32; bfloat16 and float16 never use TF32
        for name in model_names(settings):
            result = await host._load(name, settings, metrics, on_depth)
            host.catalog[name] = result if isinstance(result, Unavailable) else result.card
            if isinstance(result, Hosted):
                host.hosted[name] = result
                result.batcher.start()
        loaded = list(host.hosted)
        log.info("models on %s: %s", host.device, ", ".join(loaded) or "none loaded")
        return host

    async def _load(
        self,
        name: str,
        settings: Settings,
        metrics: Metrics,
        on_depth: Callable[[str, int], None] | None,
    ) -> Hosted | Unavailable:
        """Load and validate, place and warm, batch; never raises for a bad checkpoint."""
        started = time.perf_counter()
        ckpt = await asyncio.to_thread(checkpoint_of, name, settings)
        if isinstance(ckpt, Unavailable):
            return ckpt
        thread = self.cpu_thread or ModelThread(f"model-{name}")
        try:
            predictor = await thread.call(place_and_warm, name, ckpt, self.device, settings)
        except Exception:  # a model that cannot run on this device must not stop the others
            log.exception("could not start %s on %s", name, self.device)
            if thread is not self.cpu_thread:
                thread.stop()
            why = f"could not start on {self.device} (the log has why)"
            return _unavailable(name, "failed", why)
        if thread is not self.cpu_thread:
            self.threads.append(thread)
        batcher = self._batcher(name, predictor, settings, metrics, thread, on_depth)
        predictor.on_shrink = batcher.limit
        log.info(
            "loaded %s on %s (%s) in %.2f s",
            name,
            self.device,
            predictor.dtype,
            time.perf_counter() - started,
        )
        return Hosted(card(name, ckpt, predictor, settings), predictor, batcher)

    def _batcher(
        self,
        name: str,
        predictor: Predictor,
        settings: Settings,
        metrics: Metrics,
        thread: ModelThread,
        on_depth: Callable[[str, int], None] | None,
    ) -> DynamicBatcher:
        on_batch, gauge = _observers(metrics, name)

        def depth(n: int) -> None:
            gauge(n)
            if on_depth is not None:
                on_depth(name, n)

        return DynamicBatcher(
            predictor.launch,
            name=name,
            max_batch_size=predictor.fits,  # below MAX_BATCH_SIZE if warm-up ran out of memory
            max_delay_s=settings.max_batch_delay_ms / 1000,
            max_queue=settings.max_queue,
            depth=predictor.depth,
            thread=thread,
            on_batch=on_batch,
            on_depth=depth,
            on_lost=self._lose,
        )

    def _lose(self, exc: DeviceLost) -> None:
        if self.lost is None:
            self.lost = exc
            log.critical("%s is lost: nothing more can run on it", self.device)
            if self._on_lost is not None:
                self._on_lost(exc)

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
        for thread in self.threads:
            thread.stop()
