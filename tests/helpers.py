"""Small helpers the API tests share: encode digits, build settings."""

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI
from PIL import Image

from app.config import Settings
from app.engine.owner_process import OwnerProcess
from app.main import create_app
from models.checkpoint import CheckpointMeta, LoadedCheckpoint
from models.framing import DIGIT_LABELS
from models.registry import get_input_spec, get_model
from models.transforms import MNIST_MEAN, MNIST_STD

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"


def png(digit: np.ndarray, mode: str = "L") -> bytes:
    """A uint8 28x28 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(digit).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def random_checkpoint(name: str) -> LoadedCheckpoint:
    """``name`` with random weights, as if loaded from a checkpoint (speed and numerics tests)."""
    meta = CheckpointMeta(
        architecture=name,
        arch_kwargs={},
        input_spec=get_input_spec(name),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        labels=DIGIT_LABELS,
        test_accuracy=0.0,
        test_loss=0.0,
        train_command="tests: random weights",
        seed=0,
        dataset_fingerprint="none",
    )
    torch.manual_seed(0)
    return LoadedCheckpoint(get_model(name).eval(), meta, WEIGHTS / f"{name}.safetensors", "0")


def settings(**over: object) -> Settings:
    """Test settings: committed weights, lenet + mnist_cnn + an untrained vgg16."""
    base: dict[str, object] = dict(
        weights_dir=WEIGHTS,
        models=("lenet", "mnist_cnn", "vgg16"),
        device="cpu",
        max_batch_size=32,
        max_batch_delay_ms=2,
    )
    base.update(over)
    return Settings(**base)  # type: ignore[arg-type]


@contextmanager
def model_owner(conf: Settings) -> Iterator[OwnerProcess]:
    """A model owner for ``conf``, as the launcher starts one, in a run folder of its own."""
    with tempfile.TemporaryDirectory() as run_dir:
        owner = OwnerProcess.start(conf, Path(run_dir))
        try:
            yield owner
        finally:
            owner.stop()


@contextmanager
def shared_app(conf: Settings) -> Iterator[tuple[FastAPI, OwnerProcess]]:
    """A frontend app of the shared layout and the model owner it connects to."""
    with model_owner(conf) as owner:
        yield create_app(conf.model_copy(update={"engine_socket": str(owner.socket)})), owner
