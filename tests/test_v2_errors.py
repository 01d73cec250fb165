"""The v2 protocol's refusals through the ASGI app: requests that do not fit, unusable images,
the body limit, the queue bound and the deadline, API keys; every one an {"error"} object with
its failure's status; and the metrics that count them."""

import asyncio
import time
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import png, settings
from tests.test_faults import _client, _wrap_model
from tests.test_v2 import client, digits, error, image_input, infer

__all__ = ["client", "digits"]  # the fixtures, shared with tests/test_v2.py
KEY = "v2-test-key-9d1e"


def digit(shape: list[int], data: object = None, datatype: str = "UINT8") -> dict:
    tensor = {"name": "digit", "datatype": datatype, "shape": shape}
    return {"inputs": [tensor if data is None else {**tensor, "data": data}]}


ONE = [1, 28, 28]
ODD_IMAGE = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%"]}


@pytest.mark.parametrize(
    ("request_", "status", "words"),
    [
        ({"inputs": []}, 400, "one input per request"),
        ({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1]}]}, 400, "no input"),
        (digit(ONE, datatype="FP32"), 400, "datatype 'FP32', the model takes UINT8"),
        (digit([1, 28]), 400, "shape [1, 28] is not [N, 28, 28]"),
        (digit(ONE), 400, "no data"),
        (digit(ONE, [1]), 400, "784 whole numbers"),
        (digit(ONE, [300] * 784), 400, "0-255"),
        (digit(ONE, [0.5] * 784), 400, "784 whole numbers"),
        ({"inputs": [ODD_IMAGE]}, 400, "element 0 is not base64"),
        ({"inputs": [image_input([])]}, 422, "no images"),
        ({"inputs": [{**image_input([]), "shape": [300]}]}, 422, "at most 256"),
        ({"inputs": [image_input([b"x"])], "outputs": [{"name": "logits"}]}, 400, "no output"),
        ({"inputs": [image_input([b"x"])], "parameters": {"binary_data_output": 1}}, 400, "true"),
    ],
)
def test_requests_that_do_not_fit_are_refused(
    client: TestClient, request_: dict, status: int, words: str
) -> None:
    r = client.post("/v2/models/lenet/infer", content=orjson.dumps(request_))
    assert words in error(r, status)


def test_one_bad_image_fails_the_request_and_names_it(
    client: TestClient, digits: np.ndarray
) -> None:
    files = [png(digits[0]), b"not an image", png(digits[1])]
    r = client.post(
        "/v2/models/lenet/infer", content=orjson.dumps({"inputs": [image_input(files)]})
    )
    assert error(r, 422).startswith("image[1]: not a recognised image")
    blank = png(np.zeros((28, 28), np.uint8))
    r = client.post(
        "/v2/models/lenet/infer", content=orjson.dumps({"inputs": [image_input([blank])]})
    )
    assert "blank" in error(r, 422)


def test_protocol_errors_everywhere_under_v2(client: TestClient) -> None:
    assert "no model named 'resnet'" in error(client.get("/v2/models/resnet"), 404)
    assert "no model named 'resnet'" in error(client.get("/v2/models/resnet/ready"), 404)
    r = client.post(
        "/v2/models/resnet/infer", content=b"x", headers={"Inference-Header-Content-Length": "0"}
    )
    assert "known models: lenet, mnist_cnn, vgg16" in error(r, 404)
    assert "not valid JSON" in error(client.post("/v2/models/lenet/infer", content=b"{"), 400)
    error(client.get("/v2/models/lenet/infer"), 405)
    error(client.get("/v2/nowhere"), 404)
    r = client.post(
        "/v2/models/lenet/infer", content=b"{}", headers={"Inference-Header-Content-Length": "9"}
    )
    assert "Inference-Header-Content-Length is 9" in error(r, 400)
    vgg = client.post(
        "/v2/models/vgg16/infer", content=b"x", headers={"Inference-Header-Content-Length": "0"}
    )
    assert "not loaded" in error(vgg, 503)
    # Outside /v2, failures stay problem+json.
    assert client.get("/models/resnet").headers["content-type"] == "application/problem+json"


def test_the_body_limit_holds_and_speaks_v2() -> None:
    with TestClient(create_app(settings(models=("lenet",), max_upload_bytes=4096))) as c:
        r = c.post("/v2/models/lenet/infer", content=b"x" * 10_000)
        assert "4096-byte limit" in error(r, 413)


async def test_queue_bound_and_deadline_hold(digits: np.ndarray) -> None:
    tensor = {
        "name": "digit",
        "datatype": "UINT8",
        "shape": [2, 28, 28],
        "data": digits[:2].tolist(),
    }
    body = orjson.dumps({"inputs": [tensor]})
    app = create_app(settings(models=("lenet",), max_queue=2, max_files=2, request_timeout_s=0.6))
    async with _client(app) as c:

        def slow(fn: Callable) -> Callable:
            return lambda x: (time.sleep(0.4), fn(x))[1]

        _wrap_model(app, "lenet", slow)
        first = asyncio.create_task(c.post("/v2/models/lenet/infer", content=body))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(c.post("/v2/models/lenet/infer", content=body))
        await asyncio.sleep(0.05)
        full = await c.post("/v2/models/lenet/infer", content=body)
        assert "queue is full" in error(full, 503) and full.headers["retry-after"] == "1"
        statuses = sorted(r.status_code for r in await asyncio.gather(first, second))
        assert statuses == [200, 504]  # the second waited past REQUEST_TIMEOUT_S
        assert "no answer from lenet within 0.6 s" in error(await second, 504)


def test_metrics_count_v2_requests(client: TestClient, digits: np.ndarray) -> None:
    before = client.get("/metrics").text
    infer(client, "lenet", {"inputs": [image_input([png(digits[0])])]})
    client.post("/v2/models/lenet/infer", content=b"{")
    client.post("/v2/models/lenet/versions/7/infer", content=b"{")
    after = client.get("/metrics").text

    def count(text: str, status: str, version: str) -> float:
        line = f'zoo_requests_total{{model="lenet",status="{status}",version="{version}"}} '
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    assert count(after, "200", "1") == count(before, "200", "1") + 1
    # As /predict counts them: a request admitted for version 1, then refused for its body.
    assert count(after, "400", "1") == count(before, "400", "1") + 1
    assert count(after, "404", "_unknown") == count(before, "404", "_unknown") + 1  # no version


def test_api_keys_guard_metadata_and_inference_not_probes(digits: np.ndarray) -> None:
    with TestClient(create_app(settings(models=("lenet",), api_keys=(KEY,)))) as c:
        request = orjson.dumps({"inputs": [image_input([png(digits[0])])]})
        for method, path in [("GET", "/v2"), ("GET", "/v2/models/lenet"),
                             ("GET", "/v2/models/lenet/versions/1"),
                             ("POST", "/v2/models/lenet/infer"),
                             ("POST", "/v2/models/lenet/versions/1/infer")]:  # fmt: skip
            r = c.request(method, path, content=request if method == "POST" else None)
            assert "API key" in error(r, 401) and r.headers["www-authenticate"].startswith("Bearer")
            auth = {"authorization": f"Bearer {KEY}"}
            r = c.request(method, path, content=request if method == "POST" else None, headers=auth)
            assert r.status_code == 200, path
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/lenet/ready",
                     "/v2/models/lenet/versions/1/ready"):  # fmt: skip
            assert c.get(path).status_code == 200, path
