"""A served model: checkpoint + device + batcher, and the start-up that builds them."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from app.batching import BatchStats, DynamicBatcher
from app.config import Settings
from app.metrics import Metrics
from models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from models.registry import list_models
from models.transforms import ModelInputTransform

log = logging.getLogger(__name__)

Status = Literal["loaded", "missing", "invalid", "failed"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def train_command(name: str) -> str:
    """The command that makes a model's checkpoint, for 'not loaded' answers."""
    return f"python -m models.train --model {name} --data-dir data --out weights/{name}.safetensors"


class Predictor:
    """The model call the batcher's thread makes: digits in, class probabilities out."""

    def __init__(self, ckpt: LoadedCheckpoint, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.transform = ModelInputTransform(ckpt.meta.input_spec, ckpt.meta.mean, ckpt.meta.std)
        # channels_last is faster on CUDA and on the CPU too (lenet 45 -> 31 us/image at
        # batch 64, mnist_cnn 342 -> 224, one thread, oneDNN).
        model = ckpt.model.to(device=device, dtype=dtype)
        self.model: nn.Module = model.to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def _forward(self, digits: Tensor) -> Tensor:
        x = self.transform(digits.to(self.device, non_blocking=True))
        x = x.to(self.dtype, memory_format=torch.channels_last)
        logits = self.model(x)
        return torch.softmax(logits.float(), dim=1).cpu()

    def __call__(self, digits: Tensor) -> Tensor:
        """N x 1 x 28 x 28 floats in [0, 1] -> N x classes probabilities; halves on CUDA OOM."""
        try:
            return self._forward(digits)
        except torch.OutOfMemoryError:
            if digits.shape[0] == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = digits.shape[0] // 2
            log.warning("out of memory on a batch of %d; retrying in halves", digits.shape[0])
            return torch.cat([self(digits[:half]), self(digits[half:])])


@dataclass
class ServedModel:
    """One entry of the zoo as the service sees it, loaded or not."""

    name: str
    path: Path
    status: Status
    reason: str | None = None
    ckpt: LoadedCheckpoint | None = None
    predictor: Predictor | None = None
    batcher: DynamicBatcher | None = None
    load_seconds: float = field(default=0.0)

    @property
    def ready(self) -> bool:
        """It can answer now: "loaded" is only set once the warm-up batches have run."""
        return self.status == "loaded"


def _on_batch(metrics: Metrics, name: str) -> Callable[[BatchStats], None]:
    def observe(stats: BatchStats) -> None:
        metrics.batch_size.labels(name).observe(stats.size)
        metrics.inference.labels(name).observe(stats.inference_s)
        for wait in stats.queue_waits:
            metrics.queue_wait.labels(name).observe(wait)

    return observe


def load_one(name: str, settings: Settings, device: torch.device, metrics: Metrics) -> ServedModel:
    """Load, validate, place and warm one model; never raises for a bad checkpoint."""
    path = settings.weights_dir / f"{name}.safetensors"
    if not path.is_file():
        return ServedModel(
            name, path, "missing", f"no checkpoint at {path}; make it with: {train_command(name)}"
        )
    started = time.perf_counter()
    try:
        ckpt = load_checkpoint(path, expect_architecture=name)
    except CheckpointError as exc:
        log.error("refusing %s: %s", name, exc)
        return ServedModel(name, path, "invalid", f"{exc}; remake it with: {train_command(name)}")
    dtype = _DTYPES[settings.dtype] if device.type == "cuda" else torch.float32
    try:
        predictor = Predictor(ckpt, device, dtype)
        if settings.warmup:
            for n in sorted({1, settings.max_batch_size}):
                predictor(torch.rand(n, 1, 28, 28))
    except Exception as exc:  # a model that cannot run on this device must not stop the others
        log.exception("could not start %s on %s", name, device)
        return ServedModel(name, path, "failed", f"could not start on {device}: {exc}")
    batcher = DynamicBatcher(
        predictor,
        name=name,
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_batch_delay_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=_on_batch(metrics, name),
    )
    metrics.queue_depth.labels(name).set_function(lambda: batcher.queued_images)
    served = ServedModel(
        name,
        path,
        "loaded",
        None,
        ckpt,
        predictor,
        batcher,
        load_seconds=time.perf_counter() - started,
    )
    log.info("loaded %s on %s (%s) in %.2f s", name, device, dtype, served.load_seconds)
    return served


def model_names(settings: Settings) -> list[str]:
    """The models this service lists: MODELS if set, else every registered one."""
    known = list_models()
    unknown = [m for m in settings.models if m not in known]
    if unknown:
        raise ValueError(f"MODELS names unknown models {unknown}; known: {', '.join(known)}")
    return list(settings.models) or known
