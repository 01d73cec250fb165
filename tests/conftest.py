"""Shared fixtures: MNIST from ../shared/data (or $MNIST_DATA_DIR), committed weights, and one
running service for the tests of real clients."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from models.data import MnistSplit, load_mnist

if TYPE_CHECKING:
    from tests.server import Server

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


SERVICE_KEY = "clients-test-key-3b7a"  # the API key of keyed_service


@pytest.fixture(scope="session")
def keyed_service() -> Iterator["Server"]:
    """``python -m app`` with API keys on (lenet and mnist_cnn, 2 workers), shared by the tests
    of the real clients: tritonclient, the KServe SDK, zoo-predict --url."""
    from tests.server import GRACEFUL, start_service, stop_server

    server = start_service(MODELS="lenet,mnist_cnn", WORKERS="2", API_KEYS=SERVICE_KEY)
    yield server
    assert stop_server(server) in GRACEFUL
