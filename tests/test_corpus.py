"""Each corpus input gets its status and problem+json (or its label); the service stays up."""

import resource
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from models.data import MnistSplit
from tests.corpus import Case, cases
from tests.helpers import settings

CASES = cases("7")  # built from MNIST test digit 0, a 7


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(
        settings(
            models=("mnist_cnn",),
            max_files=16,
            max_upload_bytes=2 * 1024 * 1024,
            max_image_pixels=40_000_000,
        )
    )
    with TestClient(app) as c:
        yield c


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_input(case: Case, client: TestClient, mnist_test: MnistSplit) -> None:
    request = case.build(mnist_test.images[0, 0].numpy())
    r = client.request(**request)
    assert r.status_code == case.status, r.text[:500]
    if case.status == 200:
        pred = r.json()["predictions"][0]
        assert pred["label"] == case.label
        for key, value in case.extra.items():
            assert pred[key] == value
    else:
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == case.status and body["title"] and body["type"].startswith("/")
        if case.detail:
            assert case.detail in body["detail"]
    assert client.get("/health/ready").status_code == 200  # still serving


def test_huge_images_are_refused_without_decoding(
    client: TestClient, mnist_test: MnistSplit
) -> None:
    huge = next(c for c in CASES if c.name == "real 12000x12000 png")
    request = huge.build(mnist_test.images[0, 0].numpy())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    r = client.request(**request)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert r.status_code == 413
    assert grown_mib < 50  # decoding would have needed 137 MiB for its pixels
