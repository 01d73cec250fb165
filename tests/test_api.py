"""The HTTP contract through the ASGI app with its lifespan run (httpx via TestClient)."""

import base64
import hashlib
import io
import re
from collections.abc import Iterator
from urllib.parse import urljoin

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.digits.decode import ImageLimits
from app.digits.pipeline import to_digits
from app.main import create_app
from models.data import MnistSplit
from tests.corpus import png_header
from tests.helpers import WEIGHTS, png, settings
from tests.test_v2 import V2_OPERATIONS

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
    assert body["type"] == "/problems/model-not-loaded"
    command = str(body["detail"]).split("make it with: ")[1]
    # As pasted from the repository root (the tests run there), with no host path in it.
    assert command == (
        "python -m models.train --model vgg16 --data-dir ../shared/data "
        "--out weights/vgg16.safetensors"
    )
    assert str(WEIGHTS) not in str(body["detail"])
    assert "retry-after" not in r.headers  # retrying cannot help until someone trains it


@pytest.mark.parametrize(
    "ctype,content", [("text/plain", b"hello"), ("application/json", b'{"x": 1}'), ("", b"abc")]
)
def test_unsupported_media_type(client: TestClient, ctype: str, content: bytes) -> None:
    _problem(client.post("/predict/lenet", content=content, headers={"content-type": ctype}), 415)


def test_an_unusable_image_gets_a_problem_in_its_place(client: TestClient, digits: list) -> None:
    files = [("files", ("ok.png", digits[0][0])), ("files", ("broken.png", b"not an image"))]
    r = client.post("/predict/lenet", files=files)
    assert r.status_code == 200, r.text
    good, bad = r.json()["predictions"]
    assert good["filename"] == "ok.png" and good["label"] == str(digits[0][1])
    assert bad == {
        "type": "/problems/invalid-image",
        "title": "Invalid image",
        "status": 422,
        "detail": "broken.png: not a recognised image (allowed formats: BMP, GIF, JPEG, PNG, "
        "TIFF, WEBP)",
        "filename": "broken.png",
        "index": 1,
    }


def test_422_only_when_no_image_can_be_used(client: TestClient) -> None:
    one = _problem(client.post("/predict/lenet", files={"files": ("x.png", b"nope")}), 422)
    assert one["type"] == "/problems/invalid-image" and one["filename"] == "x.png"
    files = [("files", ("a.png", b"nope")), ("files", ("b.gif", b"GIF89a"))]
    many = _problem(client.post("/predict/lenet", files=files), 422)
    assert [p["filename"] for p in many["problems"]] == ["a.png", "b.gif"]
    assert [p["index"] for p in many["problems"]] == [0, 1]
    assert "none of the 2 images" in str(many["detail"])
    raw = client.post("/predict/lenet", content=b"nope", headers={"content-type": "image/png"})
    assert _problem(raw, 422)["filename"] == "upload-0"  # one raw image keeps its 422


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
    assert lenet["loaded"] and lenet["status"] == "ready"
    assert lenet["device"] == "cpu" and lenet["dtype"] == "float32"
    assert lenet["parameters"] == 61_610
    assert lenet["input"] == {"channels": 1, "height": 28, "width": 28}
    assert lenet["test_accuracy"] >= 0.992
    path = WEIGHTS / "lenet.safetensors"
    assert lenet["checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lenet["checkpoint"]["path"] == "lenet.safetensors"  # no host paths
    vgg = models["vgg16"]
    assert not vgg["loaded"] and vgg["status"] == "missing" and "checkpoint" not in vgg
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
    assert 'zoo_requests_total{model="lenet",status="200",version="1"}' in text
    assert 'zoo_requests_total{model="_unknown",status="404",version="_unknown"}' in text


def test_openapi_documents_every_endpoint_and_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = {
        path: {method: op["operationId"] for method, op in ops.items()}
        for path, ops in spec["paths"].items()
    }
    assert operations == {
        "/predict/{model}": {"post": "predict"},
        "/models": {"get": "listModels"},
        "/models/{name}": {"get": "getModel"},
        "/models/reload": {"post": "reloadModels"},
        "/health/live": {"get": "live"},
        "/health/ready": {"get": "ready"},
        "/metrics": {"get": "metrics"},
        **V2_OPERATIONS,  # the v2 protocol's (tests/test_v2.py checks their documentation)
    }
    predict = spec["paths"]["/predict/{model}"]["post"]
    assert {"multipart/form-data", "application/octet-stream", "image/png"} <= set(
        predict["requestBody"]["content"]
    )
    assert set(predict["responses"]) == {
        "200",
        "400",
        "404",
        "408",
        "413",
        "415",
        "422",
        "500",
        "503",
        "504",
    }
    # One Problem component, referenced by every error response, with the table's examples
    # (the v2 protocol's errors are its own {"error"} objects, from the same table).
    schemas = spec["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    for path, ops in spec["paths"].items():
        v2 = path.startswith("/v2")
        for op in ops.values():
            for code, response in op["responses"].items():
                readiness = path.endswith("/ready") and code == "503"  # a readiness answer
                if code.startswith(("4", "5")) and not readiness:
                    content = response["content"]["application/json" if v2 else PROBLEM]
                    ref = f"#/components/schemas/{'V2Error' if v2 else 'Problem'}"
                    assert content["schema"] == {"$ref": ref}, path
                    for example in content["examples"].values():
                        value = example["value"]
                        assert list(value) == ["error"] if v2 else value["status"] == int(code)
    slugs_503 = set(predict["responses"]["503"]["content"]["application/problem+json"]["examples"])
    assert slugs_503 == {"model-not-loaded", "queue-full", "shutting-down"}
    assert "Retry-After" in predict["responses"]["503"]["headers"]
    get_model = spec["paths"]["/models/{name}"]["get"]["responses"]
    assert set(get_model) == {"200", "404"}  # no 422 the route never sends
    item = schemas["PredictResponse"]["properties"]["predictions"]["items"]
    assert {"$ref": "#/components/schemas/ImageProblem"} in item["anyOf"]


def test_the_failure_table_is_well_formed() -> None:
    from app.failures import BY_SLUG, Failure

    assert len(BY_SLUG) == len(Failure)  # slugs are unique
    for failure in Failure:
        kind = failure.kind
        assert kind.when and kind.message and kind.title and 400 <= kind.status < 600
    retried = {f.kind.slug for f in Failure if f.kind.retry}
    assert retried == {"queue-full", "too-many-connections", "shutting-down"}


def test_docs_pages_use_only_local_assets_by_relative_urls(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "http://" not in html and "https://" not in html, page  # no CDN, no fonts
        urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html)
        assert urls and all(not u.startswith("/") for u in urls), urls  # any path prefix works
        for url in urls:
            r = client.get(urljoin(page, url))
            assert r.status_code == 200 and len(r.content) > 100, url
    assert client.get("/favicon.ico").headers["content-type"] == "image/png"


def test_docs_pages_work_behind_a_path_prefix() -> None:
    with TestClient(create_app(settings(models=("lenet",))), root_path="/zoo") as c:
        for page in ("/zoo/docs", "/zoo/redoc"):
            r = c.get(page)
            assert r.status_code == 200
            for url in re.findall(r'(?:src|href|spec-url)="([^"]+)"', r.text):
                assert c.get(urljoin(page, url)).status_code == 200, url


def test_bad_files_in_a_big_request_keep_their_places(client: TestClient, digits: list) -> None:
    # 9 files decode together; the rejections must land in the right slots.
    files = [("files", (f"d{i}.png", digits[i % len(digits)][0])) for i in range(9)]
    files[2] = ("files", ("huge.png", png_header(60000, 60000)))
    files[7] = ("files", ("broken.jpg", b"\xff\xd8\xff truncated jpeg"))
    r = client.post("/predict/lenet", files=files)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert (preds[2]["status"], preds[2]["index"], preds[2]["filename"]) == (413, 2, "huge.png")
    assert preds[2]["type"] == "/problems/image-too-large"
    assert (preds[7]["status"], preds[7]["index"], preds[7]["filename"]) == (422, 7, "broken.jpg")
    others = [p for i, p in enumerate(preds) if i not in (2, 7)]
    assert [p["label"] for p in others] == [
        str(digits[i % len(digits)][1]) for i in range(9) if i not in (2, 7)
    ]


def test_the_readme_lists_every_problem_type() -> None:
    from app.frontend.problems import markdown_table

    assert markdown_table() in (WEIGHTS.parent / "README.md").read_text()


def test_include_digit_returns_what_the_model_saw(
    client: TestClient, mnist_test: MnistSplit
) -> None:
    x = mnist_test.images[0, 0].numpy()
    big_dark = np.asarray(Image.fromarray(255 - x).resize((280, 280)))  # a scan, not MNIST-shaped
    files = [("files", ("mnist.png", png(x))), ("files", ("scan.png", png(big_dark)))]
    r = client.post("/predict/lenet?include=digit", files=files)
    assert r.status_code == 200, r.text
    seen = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(p["digit"]))))
        for p in r.json()["predictions"]
    ]
    assert seen[0].shape == (28, 28) and seen[0].dtype == np.uint8
    assert np.array_equal(seen[0], x)  # an MNIST digit reaches the model as it is
    assert np.array_equal(seen[1], to_digits([png(big_dark)], ImageLimits())[0][0])
    plain = client.post("/predict/lenet", files=files).json()["predictions"]
    assert all("digit" not in p for p in plain)  # only when asked
