"""The HTTP contract through the ASGI app with its lifespan run (httpx via TestClient)."""

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings())) as c:
        yield c


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> list[tuple[bytes, int]]:
    return [(png(mnist_test.images[i, 0].numpy()), int(mnist_test.labels[i])) for i in range(8)]


def _problem(r: object, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("/problems/")
    return body  # type: ignore[no-any-return]


def test_multipart_predictions_in_upload_order(client: TestClient, digits: list) -> None:
    files = [("files", (f"d{i}.png", data, "image/png")) for i, (data, _) in enumerate(digits)]
    r = client.post("/predict/mnist_cnn", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mnist_cnn" and body["device"] == "cpu"
    preds = body["predictions"]
    assert [p["filename"] for p in preds] == [f"d{i}.png" for i in range(len(digits))]
    assert [int(p["label"]) for p in preds] == [label for _, label in digits]
    for p in preds:
        assert len(p["probabilities"]) == 10
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert p["confidence"] == max(p["probabilities"])
        assert p["top_k"][0]["label"] == p["label"] and len(p["top_k"]) == 3
        probs = [t["probability"] for t in p["top_k"]]
        assert probs == sorted(probs, reverse=True)


def test_raw_image_body_and_top_k(client: TestClient, digits: list) -> None:
    data, label = digits[0]
    r = client.post(
        "/predict/lenet?top_k=10",
        content=data,
        headers={"content-type": "image/png", "x-filename": "seven.png"},
    )
    assert r.status_code == 200, r.text
    pred = r.json()["predictions"][0]
    assert pred["label"] == str(label) and pred["filename"] == "seven.png"
    assert sorted(t["label"] for t in pred["top_k"]) == [str(d) for d in range(10)]


def test_unknown_model_lists_the_known_ones(client: TestClient, digits: list) -> None:
    body = _problem(client.post("/predict/resnet", files={"files": digits[0][0]}), 404)
    assert body["known_models"] == ["lenet", "mnist_cnn", "vgg16"]
    assert "lenet" in str(body["detail"])
    _problem(client.get("/models/resnet"), 404)


def test_model_without_checkpoint_is_503_with_the_command(client: TestClient, digits: list) -> None:
    r = client.post("/predict/vgg16", files={"files": digits[0][0]})
    body = _problem(r, 503)
    assert "python -m models.train --model vgg16" in str(body["detail"])
    assert r.headers["retry-after"]


@pytest.mark.parametrize(
    "ctype,content", [("text/plain", b"hello"), ("application/json", b'{"x": 1}'), ("", b"abc")]
)
def test_unsupported_media_type(client: TestClient, ctype: str, content: bytes) -> None:
    _problem(client.post("/predict/lenet", content=content, headers={"content-type": ctype}), 415)


def test_undecodable_image_names_the_file(client: TestClient, digits: list) -> None:
    files = [("files", ("ok.png", digits[0][0])), ("files", ("broken.png", b"not an image"))]
    body = _problem(client.post("/predict/lenet", files=files), 422)
    assert body["filename"] == "broken.png" and "broken.png" in str(body["detail"])


def test_no_files(client: TestClient, digits: list) -> None:
    body = _problem(client.post("/predict/lenet", files={"image": digits[0][0]}), 422)
    assert "'image'" in str(body["detail"])  # says which part names it got
    _problem(client.post("/predict/lenet", files={"files": (None, b"text, not a file")}), 422)
    _problem(client.post("/predict/lenet", content=b"", headers={"content-type": "image/png"}), 422)


def test_broken_multipart(client: TestClient) -> None:
    _problem(
        client.post(
            "/predict/lenet", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
        ),
        400,
    )


@pytest.mark.parametrize("top_k", ["0", "11", "-1", "abc", "1.5"])
def test_bad_top_k(client: TestClient, digits: list, top_k: str) -> None:
    _problem(client.post(f"/predict/lenet?top_k={top_k}", files={"files": digits[0][0]}), 422)


def test_wrong_method(client: TestClient) -> None:
    _problem(client.get("/predict/lenet"), 405)
    _problem(client.get("/no/such/path"), 404)


def test_models_listing(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert list(models) == ["lenet", "mnist_cnn", "vgg16"]
    lenet = models["lenet"]
    assert lenet["loaded"] and lenet["device"] == "cpu" and lenet["dtype"] == "float32"
    assert lenet["parameters"] == 61_610
    assert lenet["input"] == {"channels": 1, "height": 28, "width": 28}
    assert lenet["test_accuracy"] >= 0.992
    path = WEIGHTS / "lenet.safetensors"
    assert lenet["checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    vgg = models["vgg16"]
    assert not vgg["loaded"] and vgg["status"] == "missing" and vgg["checkpoint"] is None
    assert vgg["parameters"] == 134_301_514 and vgg["input"]["height"] == 224
    assert client.get("/models/mnist_cnn").json()["parameters"] == 2_328_298


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json()["models"] == {"lenet": "ready", "mnist_cnn": "ready", "vgg16": "missing"}


def test_not_ready_without_any_model() -> None:
    with TestClient(create_app(settings(models=("vgg16",)))) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert c.get("/health/live").status_code == 200


def test_metrics_exposition(client: TestClient, digits: list) -> None:
    client.post("/predict/lenet", files={"files": digits[0][0]})
    text = client.get("/metrics").text
    for name in [
        "zoo_requests_total",
        "zoo_images_total",
        "zoo_request_latency_seconds_bucket",
        "zoo_queue_wait_seconds_bucket",
        "zoo_inference_seconds_bucket",
        "zoo_batch_size_bucket",
        "zoo_queue_depth",
    ]:
        assert name in text, name
    assert 'zoo_requests_total{model="lenet",status="200"}' in text
    assert 'zoo_requests_total{model="_unknown",status="404"}' in text


def test_openapi_documents_every_endpoint_and_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/predict/{model}",
        "/models",
        "/models/{name}",
        "/health/live",
        "/health/ready",
        "/metrics",
    } <= set(spec["paths"])
    predict = spec["paths"]["/predict/{model}"]["post"]
    assert {"multipart/form-data", "image/png"} <= set(predict["requestBody"]["content"])
    for code in ["200", "400", "404", "413", "415", "422", "503", "504"]:
        content = predict["responses"][code]["content"]
        assert any("example" in c for c in content.values()), code
    assert client.get("/docs").status_code == 200


def test_a_bad_file_in_a_big_request_is_named(client: TestClient, digits: list) -> None:
    # 9 files decode in a worker process; the rejection must still name the right file.
    files = [("files", (f"d{i}.png", digits[i % len(digits)][0])) for i in range(9)]
    files[7] = ("files", ("broken.jpg", b"\xff\xd8\xff truncated jpeg"))
    body = _problem(client.post("/predict/lenet", files=files), 422)
    assert body["filename"] == "broken.jpg" and body["index"] == 7
