"""The committed version 2 checkpoints refuse what is not one digit, through the API: the
project's own outlier suites (benchmarks/outliers.py, never trained on) are refused, MNIST test
digits are answered, version 1 refuses nothing, and the page shows a refusal as one."""

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from benchmarks import outliers
from models.data import MnistSplit
from tests.helpers import png, settings

N = 40


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings(models=("mnist_cnn", "lenet")))) as c:
        yield c


def _slots(client: TestClient, model: str, files: list[bytes], query: str = "") -> list[dict]:
    parts = [("files", (f"f{i}.png", f)) for i, f in enumerate(files)]
    r = client.post(f"/predict/{model}{query}", files=parts)
    if r.status_code == 422 and "problems" in r.json():  # none answered: every one refused
        return r.json()["problems"]
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _refused(slots: list[dict], kind: str | None = None) -> float:
    types = {"/problems/not-a-digit", "/problems/several-digits"} if kind is None else {kind}
    return float(np.mean([s.get("type") in types for s in slots]))


def test_non_digits_and_numbers_are_refused(client: TestClient, mnist_test: MnistSplit) -> None:
    model = "mnist_cnn"
    test = (mnist_test.images[:, 0].numpy(), mnist_test.labels.numpy())
    drawn, _ = outliers.suite("nondigits/canvas", N, 3)
    numbers, _ = outliers.suite("numbers/canvas", N, 3, test)
    assert _refused(_slots(client, model, drawn)) >= 0.7
    assert _refused(_slots(client, "lenet", drawn)) == 0  # lenet has version 1 only
    slots = _slots(client, model, numbers)
    assert _refused(slots) >= 0.9
    assert _refused(slots, "/problems/several-digits") >= 0.6  # mostly named for what they are
    for s in slots:
        if s.get("type") in ("/problems/not-a-digit", "/problems/several-digits"):
            assert s["status"] == 422 and s["label"] in "0123456789"
            assert 0 <= s["confidence"] <= 1 and 0 <= s["score"] <= 1


def test_mnist_digits_are_answered(client: TestClient, mnist_test: MnistSplit) -> None:
    model = "mnist_cnn"
    images, labels = mnist_test.images[:200, 0].numpy(), mnist_test.labels[:200].numpy()
    slots = _slots(client, model, [png(d) for d in images])
    assert _refused(slots) <= 0.01
    right = [s.get("label") == str(y) for s, y in zip(slots, labels, strict=True)]
    assert np.mean(right) >= 0.98


def test_a_lone_non_digit_is_the_requests_422_and_version_1_answers_it(
    client: TestClient,
) -> None:
    drawn, _ = outliers.suite("nondigits/canvas", N, 3)
    slots = _slots(client, "mnist_cnn", drawn)
    one = drawn[next(i for i, s in enumerate(slots) if s.get("type") == "/problems/not-a-digit")]
    r = client.post("/predict/mnist_cnn", files={"files": ("shape.png", one)})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "/problems/not-a-digit" and body["filename"] == "shape.png"
    assert set(body) >= {"label", "confidence", "score", "index"}
    old = client.post("/predict/mnist_cnn?version=1", files={"files": ("shape.png", one)})
    assert old.status_code == 200 and old.json()["version"] == 1  # version 1 refuses nothing


def test_the_model_says_its_operating_point(client: TestClient) -> None:
    info = client.get("/models/mnist_cnn").json()
    assert info["default_version"] == 2
    assert info["labels"][10:] == ["not-a-digit", "several-digits"]
    assert 0 < info["refuse_at"] < 1
