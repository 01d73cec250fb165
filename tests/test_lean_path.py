"""The lean predict path answers exactly as FastAPI's documented handling of the same route.

The same app is built twice: as served (``LeanRoute``: direct multipart and query parsing,
orjson) and with FastAPI running the declared endpoint itself (``lean=False``: Starlette's form
parser, FastAPI's query validation). Every request below goes to both; status, content type,
Retry-After and the JSON body must be equal, and so must the OpenAPI documents.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from models.data import MnistSplit
from tests.helpers import png, settings

MAX_FILES = 4
LIMIT = 8192


def _chunks() -> Iterator[bytes]:
    """A body without Content-Length, bigger than the limit."""
    for _ in range(10):
        yield b"y" * 1000


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    # No warm-up: it times the CPU placements and may pick differently in the two apps.
    conf = settings(
        models=("lenet", "vgg16"), max_files=MAX_FILES, max_upload_bytes=LIMIT, warmup=False
    )
    with (
        TestClient(create_app(conf)) as lean,
        TestClient(create_app(conf, lean=False)) as documented,
    ):
        yield lean, documented


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


@pytest.fixture(scope="module")
def two(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[1, 0].numpy())


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0und") -> bytes:
    """A hand-made multipart body: (part header lines, content) per part."""
    body = b"".join(f"--{boundary}\r\n{h}\r\n\r\n".encode() + data + b"\r\n" for h, data in parts)
    return body + f"--{boundary}--\r\n".encode()


def _file(name: str, filename: str | None) -> str:
    fn = "" if filename is None else f'; filename="{filename}"'
    return f'Content-Disposition: form-data; name="{name}"{fn}'


def _requests(seven: bytes, two: bytes) -> dict[str, dict[str, Any]]:
    mp = "multipart/form-data; boundary=b0und"
    files = [("files", ("a.png", seven, "image/png")), ("files", ("b.png", two, "image/png"))]
    raw = {"content": seven, "headers": {"content-type": "image/png"}}
    return {
        "one file": {"files": {"files": ("seven.png", seven, "image/png")}},
        "two files in order": {"files": files},
        "top_k 10": {"url": "/predict/lenet?top_k=10", "files": files},
        "top_k 1": {"url": "/predict/lenet?top_k=1", "files": files},
        "top_k twice": {"url": "/predict/lenet?top_k=2&top_k=5", "files": files},
        "top_k padded": {"url": "/predict/lenet?top_k=%203", "files": files},
        "top_k 03": {"url": "/predict/lenet?top_k=03", "files": files},
        **{
            f"top_k {v!r}": {"url": f"/predict/lenet?top_k={v}", "files": files}
            for v in ("0", "11", "-1", "abc", "1.5", "", "1e1")
        },
        "unknown query parameter": {"url": "/predict/lenet?x=1", "files": files},
        "include digit": {"url": "/predict/lenet?include=digit", "files": files},
        "include something else": {"url": "/predict/lenet?include=x", "files": files},
        "include empty": {"url": "/predict/lenet?include=", "files": files},
        "two bad parameters": {"url": "/predict/lenet?include=x&top_k=0", "files": files},
        "unicode filename": {
            "content": _multipart([(_file("files", "zéro.png"), seven)]),
            "headers": {"content-type": mp},
        },
        "empty filename": {
            "content": _multipart([(_file("files", ""), seven)]),
            "headers": {"content-type": mp},
        },
        "long filename": {"files": {"files": ("x" * 300 + ".png", seven, "image/png")}},
        "latin-1 charset": {
            "content": _multipart([(_file("files", "s.png"), seven)]),
            "headers": {"content-type": mp + "; charset=latin-1"},
        },
        "fields beside files": {
            "content": _multipart([(_file("note", None), b"hi"), (_file("files", "s.png"), seven)]),
            "headers": {"content-type": mp},
        },
        "a field named files": {
            "content": _multipart([(_file("files", None), b"text")]),
            "headers": {"content-type": mp},
        },
        "no files part": {"files": {"image": ("seven.png", seven, "image/png")}},
        "too many files": {
            "files": [("files", (f"{i}.png", seven, "image/png")) for i in range(5)]
        },
        "part without a name": {
            "content": _multipart([("Content-Disposition: form-data", seven)]),
            "headers": {"content-type": mp},
        },
        "missing boundary": {
            "content": b"--x\r\n",
            "headers": {"content-type": "multipart/form-data"},
        },
        "broken framing": {"content": b"--b0und\r\nnonsense", "headers": {"content-type": mp}},
        "upper-case media type": {
            "content": _multipart([(_file("files", "s.png"), seven)]),
            "headers": {"content-type": "Multipart/Form-Data; boundary=b0und"},
        },
        "raw image": {**raw, "headers": {"content-type": "image/png", "x-filename": "raw.png"}},
        "raw image, name in query": {**raw, "url": "/predict/lenet?filename=q.png"},
        "raw image, no name": raw,
        "raw image, empty": {"content": b"", "headers": {"content-type": "image/png"}},
        "text body": {"content": b"hello", "headers": {"content-type": "text/plain"}},
        "json body": {"content": b'{"a": 1}', "headers": {"content-type": "application/json"}},
        "no content type": {"content": b"abc"},
        "undecodable image": {"files": [files[0], ("files", ("bad.png", b"not an image", "x"))]},
        "blank image": {"files": {"files": ("blank.png", png(np.zeros((28, 28), np.uint8)))}},
        "body over the limit": {"files": {"files": ("big.png", bytes(LIMIT + 1))}},
        "chunked body over the limit": {"content": _chunks, "headers": {"content-type": mp}},
        "unknown model": {"url": "/predict/resnet", "files": files},
        "unknown model, bad top_k": {"url": "/predict/resnet?top_k=0", "files": files},
        "model without checkpoint": {"url": "/predict/vgg16", "files": files},
        "wrong method": {"method": "GET"},
        "no model in the path": {"url": "/predict/"},
    }


def _send(client: TestClient, request: dict[str, Any]) -> tuple[Any, ...]:
    req = dict(request)
    if callable(req.get("content")):
        req["content"] = req["content"]()  # a fresh generator for each send
    r = client.request(req.pop("method", "POST"), req.pop("url", "/predict/lenet"), **req)
    body = r.json() if r.content else None
    return r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"), body


def test_every_request_gets_the_same_answer_both_ways(
    clients: tuple[TestClient, TestClient], seven: bytes, two: bytes
) -> None:
    lean, documented = clients
    statuses = set()
    for name, request in _requests(seven, two).items():
        got, want = _send(lean, request), _send(documented, request)
        assert got == want, name
        statuses.add(got[0])
    assert statuses == {200, 400, 404, 405, 413, 415, 422, 503}  # every answer is reached


def test_the_openapi_document_is_the_same(clients: tuple[TestClient, TestClient]) -> None:
    lean, documented = clients
    assert lean.get("/openapi.json").json() == documented.get("/openapi.json").json()


def test_too_many_files_or_fields_name_the_limit(
    clients: tuple[TestClient, TestClient], seven: bytes
) -> None:
    mp = {"content-type": "multipart/form-data; boundary=b0und"}
    files = _multipart([(_file("files", f"{i}.png"), seven) for i in range(MAX_FILES + 1)])
    fields = _multipart([(_file(f"note{i}", None), b"x") for i in range(MAX_FILES + 1)])
    for client in clients:
        for body in (files, fields):
            r = client.post("/predict/lenet", content=body, headers=mp)
            problem = r.json()
            assert r.status_code == 422 and problem["type"] == "/problems/too-many-files"
            assert problem["max_files"] == MAX_FILES
