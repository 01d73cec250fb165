"""Small helpers the API tests share: encode digits, build settings."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"


def png(digit: np.ndarray, mode: str = "L") -> bytes:
    """A uint8 28x28 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(digit).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


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
