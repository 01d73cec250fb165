"""MNIST as uint8 tensors, the offline message, the fingerprint."""

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
    assert all(name in message for name in MNIST_RAW_FILES)


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
