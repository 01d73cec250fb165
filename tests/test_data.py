"""MNIST as uint8 tensors (plain or gzipped, one split's files alone), the offline message,
the fingerprint."""

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from models.data import (
    MNIST_RAW_FILES,
    MnistNotFoundError,
    MnistSplit,
    fingerprint,
    load_mnist,
)
from tests.conftest import mnist_root


def test_splits_are_uint8_tensors(mnist_test: MnistSplit) -> None:
    assert mnist_test.images.shape == (10_000, 1, 28, 28)
    assert mnist_test.images.dtype == torch.uint8
    assert mnist_test.labels.dtype == torch.int64
    assert sorted(mnist_test.labels.unique().tolist()) == list(range(10))


def test_offline_and_missing_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MnistNotFoundError) as info:
        load_mnist(tmp_path, train=False, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_RAW_FILES[2:])  # the test split's two files
    assert not any(name in message for name in MNIST_RAW_FILES[:2])


def _gzipped_test_split(tmp_path: Path) -> Path:
    """A folder holding only the test split, gzipped, as the GPU check carries it."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_RAW_FILES[2:]:
        source = mnist_root() / "MNIST" / "raw" / name
        with source.open("rb") as src, gzip.open(raw / f"{name}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    return tmp_path


def test_the_test_split_reads_gzipped_and_alone(tmp_path: Path, mnist_test: MnistSplit) -> None:
    root = _gzipped_test_split(tmp_path)
    split = load_mnist(root, train=False, download=False)
    assert torch.equal(split.images, mnist_test.images)
    assert torch.equal(split.labels, mnist_test.labels)
    assert fingerprint(split) == fingerprint(mnist_test)  # checkpoints name the same data
    with pytest.raises(MnistNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(root, train=True, download=False)  # the train split is not there


def test_the_split_equals_torchvisions_reading(mnist_test: MnistSplit) -> None:
    from torchvision.datasets import MNIST

    ds = MNIST(str(mnist_root()), train=False, download=False)
    assert torch.equal(mnist_test.images[:, 0], ds.data)
    assert torch.equal(mnist_test.labels, ds.targets.long())


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    raw = _gzipped_test_split(tmp_path) / "MNIST" / "raw"
    whole = gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes())
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(whole[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path, train=False, download=False)


def test_fingerprint_is_stable_and_sensitive(mnist_test: MnistSplit) -> None:
    small = mnist_test.head(100)
    assert fingerprint(small) == fingerprint(MnistSplit(small.images.clone(), small.labels.clone()))
    changed = small.labels.clone()
    changed[0] = (changed[0] + 1) % 10
    assert fingerprint(small) != fingerprint(MnistSplit(small.images, changed))


def test_head_and_to() -> None:
    split = MnistSplit(torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.arange(5))
    assert len(split.head(3)) == 3 and len(split.head(None)) == 5
    assert split.to("cpu").images.device.type == "cpu"
