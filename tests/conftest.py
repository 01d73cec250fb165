"""Shared fixtures: MNIST from ../shared/data (or $MNIST_DATA_DIR), committed weights."""

import os
from pathlib import Path

import pytest

from models.data import MnistSplit, load_mnist

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"


def mnist_root() -> Path:
    """Where the tests read MNIST: $MNIST_DATA_DIR, else ../shared/data beside the repo."""
    return Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return mnist_root()


@pytest.fixture(scope="session")
def mnist_test() -> MnistSplit:
    return load_mnist(mnist_root(), train=False, download=False)


@pytest.fixture(scope="session")
def mnist_train() -> MnistSplit:
    return load_mnist(mnist_root(), train=True, download=False)
