"""The v2 protocol with the clients platform teams use, against ``python -m app`` with API keys
on: tritonclient[http] (in this environment) and the KServe SDK's REST client (in its own, see
tests/kserve_env.py). Their answers must equal /predict's for the same images.
"""

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from benchmarks import outliers
from models.data import MnistSplit
from tests.conftest import SERVICE_KEY
from tests.helpers import png
from tests.kserve_env import run_script
from tests.server import Server

N = 64


def auth() -> dict[str, str]:
    """The key's header, in a fresh dict each call: both clients add the binary extension's
    Inference-Header-Content-Length to the dict they are given, and would send it again, stale,
    with the next request that has no binary data."""
    return {"Authorization": f"Bearer {SERVICE_KEY}"}


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:N, 0].numpy()


@pytest.fixture(scope="module")
def pngs(digits: np.ndarray) -> list[bytes]:
    return [png(d) for d in digits]


@pytest.fixture(scope="module")
def expected(keyed_service: Server, pngs: list[bytes]) -> np.ndarray:
    """/predict's probabilities for the 64 PNGs."""
    files = [("files", (f"{i}.png", f, "image/png")) for i, f in enumerate(pngs)]
    r = httpx.post(f"{keyed_service.url}/predict/lenet", files=files, headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    return np.array([p["probabilities"] for p in r.json()["predictions"]], np.float32)


@pytest.fixture(scope="module")
def client(keyed_service: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(keyed_service.url.removeprefix("http://"))


def test_tritonclient_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()  # probes need no key
    assert client.is_model_ready("lenet") and not client.is_model_ready("lenet", "9")
    server = client.get_server_metadata(headers=auth())
    assert server["name"] == "mnist-zoo"
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    model = client.get_model_metadata("lenet", headers=auth())
    assert [(t["name"], t["datatype"], t["shape"]) for t in model["inputs"]] == [
        ("image", "BYTES", [-1]),
        ("digit", "UINT8", [-1, 28, 28]),
    ]
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("lenet", "1", headers=auth()) == model


def test_tritonclient_bytes_and_uint8_answer_as_predict(
    client: triton.InferenceServerClient,
    pngs: list[bytes],
    digits: np.ndarray,
    expected: np.ndarray,
) -> None:
    image = triton.InferInput("image", [N], "BYTES")
    image.set_data_from_numpy(np.array(pngs, dtype=np.object_), binary_data=True)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=True)]
    got = client.infer("lenet", [image], outputs=wanted, headers=auth())
    np.testing.assert_allclose(got.as_numpy("probabilities"), expected, atol=1e-5)
    for binary in (True, False):  # the extension's bytes, and JSON numbers
        digit = triton.InferInput("digit", [N, 28, 28], "UINT8")
        digit.set_data_from_numpy(digits, binary_data=binary)
        got = client.infer("lenet", [digit], headers=auth(), model_version="1")
        assert got.get_response()["model_version"] == "1"
        np.testing.assert_allclose(got.as_numpy("probabilities"), expected, atol=1e-5)


def test_tritonclient_classification(
    client: triton.InferenceServerClient, digits: np.ndarray, expected: np.ndarray
) -> None:
    digit = triton.InferInput("digit", [N, 28, 28], "UINT8")
    digit.set_data_from_numpy(digits, binary_data=True)
    for binary in (True, False):
        wanted = [triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)]
        answer = client.infer("lenet", [digit], outputs=wanted, headers=auth())
        top = answer.as_numpy("probabilities")
        assert top.shape == (N, 3)
        parsed = [[str(e.decode() if binary else e).split(":") for e in row] for row in top]
        indices = np.array([[int(i) for _, i, _ in row] for row in parsed])
        assert (indices == np.argsort(-expected, axis=1, kind="stable")[:, :3]).all()
        values = np.array([[float(v) for v, _, _ in row] for row in parsed])
        np.testing.assert_allclose(values, np.take_along_axis(expected, indices, 1), atol=1e-5)
        assert all(label == index for row in parsed for _, index, label in row)


def test_tritonclient_raises_the_services_errors(
    client: triton.InferenceServerClient, pngs: list[bytes]
) -> None:
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([pngs[0], b"not an image"], dtype=np.object_))
    cases = [
        (lambda: client.infer("resnet", [image], headers=auth()), "404", "no model named 'resnet'"),
        (lambda: client.infer("lenet", [image], headers=auth()), "422", "image[1]: not a recog"),
        (lambda: client.infer("lenet", [image]), "401", "needs an API key"),
        (lambda: client.get_model_metadata("lenet", "7", headers=auth()), "404", "no version 7"),
    ]
    for call, status, words in cases:
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == status and words in raised.value.message()


def test_a_raw_body_answers_200(keyed_service: Server, pngs: list[bytes]) -> None:
    """What ``curl --data-binary @digit.png -H 'Inference-Header-Content-Length: 0'`` sends."""
    r = httpx.post(
        f"{keyed_service.url}/v2/models/lenet/infer",
        content=pngs[0],
        headers={**auth(), "Inference-Header-Content-Length": "0"},
    )
    assert r.status_code == 200 and int(np.argmax(r.json()["outputs"][0]["data"])) == 7


KSERVE_SCRIPT = """
import asyncio, json, sys
import httpx, numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

async def main(url, key, npz):
    data = np.load(npz, allow_pickle=True)
    auth = lambda: {"Authorization": f"Bearer {key}"}  # fresh: infer() adds to the dict
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    out = {"live": await client.is_server_live(url), "ready": await client.is_server_ready(url),
           "model_ready": await client.is_model_ready(url, "lenet")}
    image = InferInput("image", [len(data["pngs"])], "BYTES")
    image.set_data_from_numpy(data["pngs"], binary_data=True)
    wanted = [RequestedOutput("probabilities", {"binary_data": True})]
    request = InferRequest("lenet", [image], request_outputs=wanted)
    answer = await client.infer(url, request, model_name="lenet", headers=auth())
    out["image"] = answer.outputs[0].as_numpy().tolist()
    digit = InferInput("digit", list(data["digits"].shape), "UINT8")
    digit.set_data_from_numpy(data["digits"], binary_data=False)
    answer = await client.infer(url, InferRequest("lenet", [digit]), model_name="lenet",
                                headers=auth())
    out["digit"] = answer.outputs[0].as_numpy().tolist()
    for name, headers in (("resnet", auth()), ("lenet", None)):
        try:
            await client.infer(url, InferRequest(name, [digit]), model_name=name, headers=headers)
        except httpx.HTTPStatusError as exc:
            out[f"{name}-{bool(headers)}"] = [exc.response.status_code, str(exc)]
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"""


def test_the_kserve_sdk(
    keyed_service: Server,
    pngs: list[bytes],
    digits: np.ndarray,
    expected: np.ndarray,
    tmp_path: Path,
) -> None:
    npz = tmp_path / "inputs.npz"
    np.savez(npz, pngs=np.array(pngs, dtype=np.object_), digits=digits)
    out = run_script(KSERVE_SCRIPT, keyed_service.url, SERVICE_KEY, str(npz))
    assert (out["live"], out["ready"], out["model_ready"]) == (True, True, True)
    np.testing.assert_allclose(np.array(out["image"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(out["digit"]), expected, atol=1e-5)
    status, message = out["resnet-True"]
    assert status == 404 and "no model named 'resnet'" in message, json.dumps(out["resnet-True"])
    status, message = out["lenet-False"]
    assert status == 401 and "needs an API key" in message


def test_tritonclient_sees_an_image_that_is_not_a_digit_as_the_requests_error(
    client: triton.InferenceServerClient, keyed_service: Server
) -> None:
    drawn, _ = outliers.suite("nondigits/canvas", 40, 3)
    files = [("files", (f"{i}.png", f, "image/png")) for i, f in enumerate(drawn)]
    url = f"{keyed_service.url}/predict/mnist_cnn"
    r = httpx.post(url, files=files, headers=auth(), timeout=60)
    slots = r.json()["predictions"] if r.status_code == 200 else r.json()["problems"]
    one = drawn[next(i for i, s in enumerate(slots) if s.get("type") == "/problems/not-a-digit")]
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([one], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("mnist_cnn", [image], headers=auth())
    assert "image[0]: not a digit" in str(refused.value) and "best guess" in str(refused.value)
    old = client.infer("mnist_cnn", [image], model_version="1", headers=auth())  # refuses nothing
    assert old.as_numpy("probabilities").shape == (1, 10)
