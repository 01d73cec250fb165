"""MNIST held as uint8 tensors on the training device (augmentation: models/augment.py)."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

MNIST_RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MnistNotFoundError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable."""


@dataclass(frozen=True)
class MnistSplit:
    """One split: images N x 1 x 28 x 28 uint8, labels N int64."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "MnistSplit":
        """The same split on ``device``."""
        return MnistSplit(self.images.to(device), self.labels.to(device))

    def head(self, n: int | None) -> "MnistSplit":
        """The first ``n`` images (all of them when ``n`` is None)."""
        return self if n is None else MnistSplit(self.images[:n], self.labels[:n])


def missing_message(root: Path) -> str:
    """What to tell a user whose MNIST is not where we looked."""
    raw = root / "MNIST" / "raw"
    files = ", ".join(MNIST_RAW_FILES)
    return (
        f"MNIST not found under {root} and it could not be downloaded. "
        f"Put the four IDX files ({files}; .gz also accepted) in {raw}/ "
        f"or pass --data-dir pointing at a folder that has MNIST/raw/ inside."
    )


def load_mnist(root: str | Path, *, train: bool, download: bool = True) -> MnistSplit:
    """Read one MNIST split from torchvision's layout under ``root``, downloading if allowed."""
    from torchvision.datasets import MNIST  # slow import; only the training side needs it

    root = Path(root)
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise MnistNotFoundError(missing_message(root)) from None
        try:
            ds = MNIST(str(root), train=train, download=True)
        except Exception as exc:  # offline: every mirror fails with its own error type
            raise MnistNotFoundError(missing_message(root)) from exc
    return MnistSplit(ds.data.unsqueeze(1).contiguous(), ds.targets.long())


def fingerprint(*splits: MnistSplit) -> str:
    """sha256 of the images and labels, so a checkpoint names the exact data it saw."""
    h = hashlib.sha256()
    for split in splits:
        h.update(split.images.cpu().numpy().tobytes())
        h.update(split.labels.cpu().numpy().tobytes())
    return h.hexdigest()
