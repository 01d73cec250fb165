"""Where checkpoints live: the weights folder and each model's file in it (imports no torch)."""

from pathlib import Path

WEIGHTS_DIR = Path("weights")


def checkpoint_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Where model ``name``'s checkpoint lives: ``<weights_dir>/<name>.safetensors``."""
    return Path(weights_dir) / f"{name}.safetensors"
