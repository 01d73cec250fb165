"""What a ModelHost loads: the listed models, and one version of one, from its file to a warmed
Predictor and its public record, or the reason it cannot serve (with what would fix it). Used at
start-up and by every reload alike.
"""

import logging
from pathlib import Path

import torch

from app.config import Settings
from app.engine.predictor import Predictor
from app.serving.catalog import CheckpointInfo, Loaded, Reason, Unavailable
from models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from models.registry import get_input_spec, get_model, list_models
from models.runtime import inference_dtype
from models.weights import VersionFile, checkpoint_path

log = logging.getLogger(__name__)


def model_names(settings: Settings) -> list[str]:
    """The models this service lists: MODELS if set, else every registered one; the pins of
    MODEL_VERSIONS must name listed models."""
    known = list_models()
    unknown = [m for m in settings.models if m not in known]
    if unknown:
        raise ValueError(f"MODELS names unknown models {unknown}; known: {', '.join(known)}")
    names = list(settings.models) or known
    if stray := sorted(set(settings.model_versions) - set(names)):
        raise ValueError(f"MODEL_VERSIONS pins models this service does not list: {stray}")
    return names


def shown(path: Path, weights_dir: Path) -> str:
    """A path in the weights folder as anyone may see it: relative to the working directory,
    or named by the setting it comes from; never the absolute path of this host."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"$WEIGHTS_DIR/{in_weights(path, weights_dir)}"


def in_weights(path: Path, weights_dir: Path) -> str:
    """A version's file as seen from the weights folder: ``lenet.safetensors``, ``lenet/2...``."""
    try:
        return path.relative_to(weights_dir).as_posix()
    except ValueError:
        return path.name


def train_command(name: str, weights_dir: Path, out: Path | None = None) -> str:
    """The command that makes a model's checkpoint (at ``out``, by default version 1's file),
    as the README runs it from the repository root (MNIST in ../shared/data, downloaded there
    when the network allows)."""
    out = out or checkpoint_path(name, weights_dir)
    return (f"python -m models.train --model {name} --data-dir ../shared/data "
            f"--out {shown(out, weights_dir)}")  # fmt: skip


def parameters(name: str) -> int:
    """The model's parameter count, built on the meta device: no memory, no weights."""
    with torch.device("meta"):
        return sum(p.numel() for p in get_model(name).parameters())


def unavailable(name: str, version: int | None, status: Reason, reason: str) -> Unavailable:
    """The record of a version (or, None, a model) that cannot serve."""
    return Unavailable(name, parameters(name), get_input_spec(name).as_tuple(), version, status,
                       reason)  # fmt: skip


def no_checkpoint(name: str, settings: Settings) -> Unavailable:
    """The record of a model with no checkpoint at all, and the command that makes one."""
    make = train_command(name, settings.weights_dir)
    path = checkpoint_path(name, settings.weights_dir)
    reason = f"no checkpoint {path.name} in WEIGHTS_DIR; make it with: {make}"
    return unavailable(name, None, "missing", reason)


def checkpoint_of(
    name: str, version: int, file: VersionFile, settings: Settings
) -> LoadedCheckpoint | Unavailable:
    """Load and validate one version's file, or say why not and what would remake it."""
    try:
        return load_checkpoint(file.path, expect_architecture=name)
    except CheckpointError as exc:
        log.error("refusing %s version %d: %s", name, version, exc)
        remake = train_command(name, settings.weights_dir, file.path)
        where = in_weights(file.path, settings.weights_dir)
        reason = str(exc).replace(str(file.path), where)  # the log has the full path
        return unavailable(name, version, "invalid", f"{reason}; remake it with: {remake}")


def place(ckpt: LoadedCheckpoint, device: torch.device, settings: Settings) -> Predictor:
    """The model on its device in its serving dtype, warmed at every batch size it will run
    (on CUDA, in the thread that will run its batches: cuBLAS and cuDNN handles are per thread)."""
    predictor = Predictor(ckpt, device, inference_dtype(device, settings.dtype),
                          settings.max_batch_size)  # fmt: skip
    if settings.warmup:
        predictor.warm_up()
    return predictor


def calibrate(name: str, version: int, predictor: Predictor, settings: Settings) -> None:
    """Choose the CPU placement per batch size; in the thread the CPU models share, since it
    switches oneDNN off process-wide for its calls (elsewhere that would race their batches)."""
    if settings.warmup and (chosen := predictor.calibrate()):
        log.info("%s version %d on %s: %s", name, version, predictor.device, chosen)


def card(
    name: str, version: int, ckpt: LoadedCheckpoint, predictor: Predictor, settings: Settings
) -> Loaded:
    """The public record of a loaded version."""
    meta = ckpt.meta
    return Loaded(
        name=name,
        parameters=parameters(name),
        input=get_input_spec(name).as_tuple(),
        version=version,
        device=str(predictor.device),
        dtype=str(predictor.dtype).removeprefix("torch."),
        labels=tuple(meta.labels),
        test_accuracy=meta.test_accuracy,
        test_loss=meta.test_loss,
        max_batch_size=settings.max_batch_size,
        checkpoint=CheckpointInfo(
            path=in_weights(ckpt.path, settings.weights_dir),  # no host paths to anyone
            sha256=ckpt.file_sha256,
            created_at=meta.created_at,
            train_command=meta.train_command,
            torch_version=meta.torch_version,
            dataset_fingerprint=meta.dataset_fingerprint,
        ),
        refuse_at=meta.refuse_at,
    )
