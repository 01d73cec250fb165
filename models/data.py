"""MNIST held as uint8 tensors on the training device (augmentation: models/augment.py)."""

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def _split_files(train: bool) -> tuple[str, str]:
    """The images and labels files of one split."""
    return MNIST_RAW_FILES[:2] if train else MNIST_RAW_FILES[2:]


def missing_message(root: Path, train: bool | None = None) -> str:
    """What to tell a user whose MNIST is not where we looked (``train``: the split asked for;
    None names all four files)."""
    raw = root / "MNIST" / "raw"
    names = MNIST_RAW_FILES if train is None else _split_files(train)
    files = ", ".join(names)
    return (
        f"MNIST not found under {root} and it could not be downloaded. "
        f"Put the IDX files ({files}; .gz also accepted) in {raw}/ "
        f"or pass --data-dir pointing at a folder that has MNIST/raw/ inside."
    )


def _idx_path(raw: Path, name: str) -> Path | None:
    """The file ``name`` in ``raw``, plain or gzipped (the GPU check carries MNIST gzipped)."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's images or labels), plain or .gz, as an array."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    zero, kind, dims = data[0:2], data[2], data[3]
    if zero != b"\0\0" or kind != 0x08:  # 0x08: unsigned byte, the only type MNIST uses
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {values.size} values for shape {shape} (truncated?)")
    return values.reshape(shape)


def _read_split(root: Path, train: bool) -> MnistSplit | None:
    """The split from its two files under ``root/MNIST/raw``, or None when one is absent."""
    raw = root / "MNIST" / "raw"
    paths = [_idx_path(raw, name) for name in _split_files(train)]
    if paths[0] is None or paths[1] is None:
        return None
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{raw}: {images.shape[0]} images but {labels.shape[0]} labels")
    return MnistSplit(
        torch.from_numpy(images.copy()).unsqueeze(1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
    )


def load_mnist(root: str | Path, *, train: bool, download: bool = True) -> MnistSplit:
    """Read one MNIST split from torchvision's layout under ``root`` (only that split's two
    files, plain or .gz), downloading if allowed."""
    root = Path(root)
    split = _read_split(root, train)
    if split is not None:
        return split
    if not download:
        raise MnistNotFoundError(missing_message(root, train))
    from torchvision.datasets import MNIST  # slow import; only a download needs it

    try:
        ds = MNIST(str(root), train=train, download=True)
    except Exception as exc:  # offline: every mirror fails with its own error type
        raise MnistNotFoundError(missing_message(root, train)) from exc
    return MnistSplit(ds.data.unsqueeze(1).contiguous(), ds.targets.long())


def fingerprint(*splits: MnistSplit) -> str:
    """sha256 of the images and labels, so a checkpoint names the exact data it saw."""
    h = hashlib.sha256()
    for split in splits:
        h.update(split.images.cpu().numpy().tobytes())
        h.update(split.labels.cpu().numpy().tobytes())
    return h.hexdigest()
