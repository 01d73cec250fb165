"""MNIST as uint8 tensors, the offline message, the fingerprint, on-device augmentation."""

from pathlib import Path

import pytest
import torch

from models.data import (
    MNIST_RAW_FILES,
    MnistNotFoundError,
    MnistSplit,
    fingerprint,
    load_mnist,
    random_affine,
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


def test_identity_affine_changes_nothing(mnist_test: MnistSplit) -> None:
    x = mnist_test.images[:16].float() / 255
    out = random_affine(
        x, torch.Generator().manual_seed(0), max_degrees=0, max_shift=0, scale=(1.0, 1.0)
    )
    assert torch.allclose(out, x, atol=1e-5)


def test_random_affine_moves_digits_a_little(mnist_test: MnistSplit) -> None:
    x = mnist_test.images[:64].float() / 255
    out = random_affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    diff = (out - x).abs().mean(dim=(1, 2, 3))
    assert (diff > 0.01).all()  # every image moved
    ink_ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ((ink_ratio > 0.7) & (ink_ratio < 1.3)).all()  # ... and stayed in the frame
    again = random_affine(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded: reproducible
