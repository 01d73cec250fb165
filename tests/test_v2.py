"""The v2 protocol through the ASGI app: metadata, health, inference in JSON, binary and raw,
its answers against /predict's, versions, errors as {"error"}, limits, keys, metrics, docs.

The real clients (tritonclient, the KServe SDK) against a running service are in
tests/test_v2_clients.py.
"""

import base64
import io
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings, shared_app

DIGITS = [-1, 28, 28]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings())) as c:
        yield c


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:8, 0].numpy()


def other_styles(digits: np.ndarray) -> list[bytes]:
    """Uploads unlike MNIST: dark on light, big, JPEG, transparent canvas."""
    out = []
    for i, d in enumerate(digits[:4]):
        img = Image.fromarray(255 - d).resize((140, 140))
        buf = io.BytesIO()
        if i % 2:
            img.convert("RGB").save(buf, format="JPEG", quality=90)
        else:
            rgba = Image.new("RGBA", img.size, (0, 0, 0, 0))
            rgba.putalpha(Image.fromarray(d).resize((140, 140)))
            rgba.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def infer(c: TestClient, model: str, request: dict, path: str = "") -> dict:
    r = c.post(f"/v2/models/{model}{path}/infer", content=orjson.dumps(request))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return orjson.loads(r.content)


def image_input(files: list[bytes]) -> dict:
    data = [base64.b64encode(f).decode() for f in files]
    return {"name": "image", "datatype": "BYTES", "shape": [len(files)], "data": data}


def predict(c: TestClient, model: str, files: list[bytes]) -> np.ndarray:
    r = c.post(f"/predict/{model}", files=[("files", (f"{i}.png", f)) for i, f in enumerate(files)])
    assert r.status_code == 200, r.text
    return np.array([p["probabilities"] for p in r.json()["predictions"]], np.float32)


def error(r: object, status: int) -> str:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert list(body) == ["error"] and body["error"]
    return str(body["error"])


def test_server_metadata_and_health(client: TestClient) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "mnist-zoo" and meta["version"] == client.app.version  # type: ignore[attr-defined]
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_and_readiness(client: TestClient) -> None:
    meta = client.get("/v2/models/lenet").json()
    assert meta["name"] == "lenet" and meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "digit", "datatype": "UINT8", "shape": DIGITS},
    ]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get("/v2/models/lenet/versions/1").json() == meta
    assert client.get("/v2/models/lenet/ready").json() == {"name": "lenet", "ready": True}
    assert client.get("/v2/models/lenet/versions/1/ready").status_code == 200
    r = client.get("/v2/models/vgg16/ready")  # listed, no checkpoint
    assert (r.status_code, r.json()) == (503, {"name": "vgg16", "ready": False})
    assert "not loaded" in error(client.get("/v2/models/vgg16"), 503)


def test_digits_answer_as_predict_does(client: TestClient, digits: np.ndarray) -> None:
    tensor = {"name": "digit", "datatype": "UINT8", "shape": [8, 28, 28]}
    flat = infer(client, "mnist_cnn", {"inputs": [{**tensor, "data": digits.ravel().tolist()}]})
    nested = infer(client, "mnist_cnn", {"inputs": [{**tensor, "data": digits.tolist()}]})
    assert flat == nested and flat["model_name"] == "mnist_cnn" and flat["model_version"] == "2"
    (out,) = flat["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("probabilities", "FP32", [8, 10])
    got = np.array(out["data"], np.float32).reshape(8, 10)
    # An MNIST digit reaches the model unchanged through /predict's preprocessing.
    np.testing.assert_array_equal(got, predict(client, "mnist_cnn", [png(d) for d in digits]))


def test_images_are_preprocessed_as_predict_does(client: TestClient, digits: np.ndarray) -> None:
    files = other_styles(digits)
    body = infer(client, "lenet", {"id": "req-1", "inputs": [image_input(files)]})
    assert body["id"] == "req-1"
    got = np.array(body["outputs"][0]["data"], np.float32).reshape(len(files), 10)
    np.testing.assert_array_equal(got, predict(client, "lenet", files))


def test_null_means_absent(client: TestClient, digits: np.ndarray) -> None:
    tensor = {**image_input([png(digits[0])]), "parameters": None}
    body = infer(client, "lenet", {"id": None, "parameters": None, "inputs": [tensor]})
    assert "id" not in body and body["outputs"][0]["shape"] == [1, 10]
    outputs = [{"name": "probabilities", "parameters": None}]
    assert infer(client, "lenet", {"inputs": [tensor], "outputs": outputs})["outputs"]


def test_binary_in_and_out(client: TestClient, digits: np.ndarray) -> None:
    files = [png(d) for d in digits]
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    head = orjson.dumps(
        {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [8],
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )  # fmt: skip
    r = client.post(
        "/v2/models/lenet/infer",
        content=head + raw,
        headers={"inference-header-content-length": str(len(head))},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    (out,) = orjson.loads(r.content[:n])["outputs"]
    assert (
        out["parameters"]
        == {"binary_data_size": 8 * 10 * 4}
        == {"binary_data_size": len(r.content) - n}
    )
    got = np.frombuffer(r.content[n:], "<f4").reshape(8, 10)
    np.testing.assert_array_equal(got, predict(client, "lenet", files))


def test_classification_returns_the_top_k(client: TestClient, digits: np.ndarray) -> None:
    files = [png(d) for d in digits[:2]]
    request = {"inputs": [image_input(files)]}
    probs = predict(client, "lenet", files)
    for k in (1, 3, 10, 11):
        request["outputs"] = [{"name": "probabilities", "parameters": {"classification": k}}]
        (out,) = infer(client, "lenet", request)["outputs"]
        shown = min(k, 10)  # never more than the model's classes
        assert (out["datatype"], out["shape"]) == ("BYTES", [2, shown])
        rows = np.array(out["data"]).reshape(2, shown)
        for row, p in zip(rows, probs, strict=True):
            values, indices, labels = zip(*(e.split(":") for e in row), strict=True)
            assert [int(i) for i in indices] == np.argsort(-p, kind="stable")[:shown].tolist()
            assert labels == indices  # the labels are "0" to "9"
            assert [np.float32(v) for v in values] == [p[int(i)] for i in indices]


def test_the_shared_layout_answers_the_same(client: TestClient, digits: np.ndarray) -> None:
    """Digits through the model owner's wire (ENGINE=shared, the GPU default), as in-process."""
    sixteen = np.concatenate([digits, digits])  # past the sizes whose placement is timed
    tensor = {"name": "digit", "datatype": "UINT8", "shape": [16, 28, 28], "data": sixteen.tolist()}
    request = {"inputs": [tensor]}
    with shared_app(settings(models=("lenet",))) as (app, _), TestClient(app) as shared:
        assert infer(shared, "lenet", request) == infer(client, "lenet", request)


def test_a_raw_body_is_one_image(client: TestClient, digits: np.ndarray) -> None:
    r = client.post(
        "/v2/models/lenet/infer",
        content=png(digits[0]),
        headers={"Inference-Header-Content-Length": "0"},
    )
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["shape"] == [1, 10] and int(np.argmax(out["data"])) == 7


def test_versions(tmp_path: Path, digits: np.ndarray) -> None:
    """The version paths reach the version they name: the same resolver as ?version=N."""
    (tmp_path / "lenet").mkdir()
    shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "lenet.safetensors")
    shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "lenet" / "2.safetensors")
    (tmp_path / "lenet" / "3.safetensors").write_bytes(b"not a checkpoint")
    request = {"inputs": [image_input([png(digits[0])])]}
    with TestClient(create_app(settings(weights_dir=tmp_path, models=("lenet",)))) as c:
        assert infer(c, "lenet", request)["model_version"] == "2"  # the highest loaded one
        assert infer(c, "lenet", request, "/versions/1")["model_version"] == "1"
        assert c.get("/v2/models/lenet").json()["versions"] == ["1", "2", "3"]
        assert c.get("/v2/models/lenet/versions/1/ready").json()["ready"] is True
        assert "lenet version 3 is not loaded" in error(c.get("/v2/models/lenet/versions/3"), 503)
        assert c.get("/v2/models/lenet/versions/3/ready").status_code == 503
        for path in ("/v2/models/lenet/versions/4", "/v2/models/lenet/versions/4/ready"):
            assert "lenet has no version 4; known versions: 1, 2, 3" in error(c.get(path), 404)
        for bad in ("0", "9" * 80, "x"):
            r = c.post(f"/v2/models/lenet/versions/{bad}/infer", content=orjson.dumps(request))
            assert f"no version {bad[:64]}" in error(r, 404)  # a long one shortened


# The protocol's paths and their operation ids (tests/test_api.py expects them in the document).
V2_OPERATIONS = {
    "/v2": {"get": "serverMetadata"},
    "/v2/health/live": {"get": "serverLive"},
    "/v2/health/ready": {"get": "serverReady"},
    "/v2/models/{model}": {"get": "modelMetadata"},
    "/v2/models/{model}/versions/{version}": {"get": "modelVersionMetadata"},
    "/v2/models/{model}/ready": {"get": "modelReady"},
    "/v2/models/{model}/versions/{version}/ready": {"get": "modelVersionReady"},
    "/v2/models/{model}/infer": {"post": "infer"},
    "/v2/models/{model}/versions/{version}/infer": {"post": "inferVersion"},
}


def test_openapi_documents_the_protocol(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    v2 = {
        path: {m: op["operationId"] for m, op in ops.items()}
        for path, ops in spec["paths"].items()
        if path.startswith("/v2")
    }
    assert v2 == V2_OPERATIONS
    op = spec["paths"]["/v2/models/{model}/infer"]["post"]
    assert op["tags"] == ["v2"]
    body = op["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/InferRequestBody"}
    assert "application/octet-stream" in body
    assert set(op["responses"]["200"]["content"]) == {
        "application/json",
        "application/octet-stream",
    }
    for code, response in op["responses"].items():
        if code != "200":
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/V2Error"}
            assert all("error" in ex["value"] for ex in content["examples"].values())
    schemas = spec["components"]["schemas"]
    assert schemas["RequestInput"]["properties"]["name"]["enum"] == ["image", "digit"]
    header = [p for p in op["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in header] == ["Inference-Header-Content-Length"]
