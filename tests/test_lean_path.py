"""The predict route's answers to valid, invalid and odd requests, one table of them.

The route is served by a lean handler (direct multipart and query parsing, orjson) that FastAPI
routes to and documents; these are the answers FastAPI's own handling gave when the two were
compared side by side, kept as the route's expected behaviour.
"""

import re
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
def client() -> Iterator[TestClient]:
    conf = settings(models=("lenet", "vgg16"), max_files=MAX_FILES, max_upload_bytes=LIMIT)
    with TestClient(create_app(conf)) as c:
        yield c


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


# (status, problem type) for each request of _requests; a 200 lists each upload's label or type.
EXPECTED: dict[str, tuple[int, Any]] = {
    "one file": (200, ["7"]),
    "two files in order": (200, ["7", "2"]),
    "top_k 10": (200, ["7", "2"]),
    "top_k 1": (200, ["7", "2"]),
    "top_k twice": (200, ["7", "2"]),
    "top_k padded": (200, ["7", "2"]),
    "top_k 03": (200, ["7", "2"]),
    **{
        f"top_k {v!r}": (422, "/problems/invalid-request")
        for v in ("0", "11", "-1", "abc", "1.5", "", "1e1")
    },
    "unknown query parameter": (200, ["7", "2"]),
    "include digit": (200, ["7", "2"]),
    "include something else": (422, "/problems/invalid-request"),
    "include empty": (422, "/problems/invalid-request"),
    "two bad parameters": (422, "/problems/invalid-request"),
    "unicode filename": (200, ["7"]),
    "empty filename": (200, ["7"]),
    "long filename": (200, ["7"]),
    "latin-1 charset": (200, ["7"]),
    "fields beside files": (200, ["7"]),
    "a field named files": (422, "/problems/no-files"),
    "no files part": (422, "/problems/no-files"),
    "too many files": (422, "/problems/too-many-files"),
    "part without a name": (400, "/problems/malformed-multipart"),
    "missing boundary": (400, "/problems/malformed-multipart"),
    "broken framing": (422, "/problems/no-files"),
    "upper-case media type": (200, ["7"]),
    "raw image": (200, ["7"]),
    "raw image, name in query": (200, ["7"]),
    "raw image, no name": (200, ["7"]),
    "raw image, empty": (422, "/problems/no-files"),
    "text body": (415, "/problems/unsupported-media-type"),
    "json body": (415, "/problems/unsupported-media-type"),
    "no content type": (415, "/problems/unsupported-media-type"),
    "undecodable image": (200, ["7", "/problems/invalid-image"]),
    "blank image": (422, "/problems/invalid-image"),
    "body over the limit": (413, "/problems/content-too-large"),
    "chunked body over the limit": (413, "/problems/content-too-large"),
    "unknown model": (404, "/problems/unknown-model"),
    "unknown model, bad top_k": (422, "/problems/invalid-request"),
    "model without checkpoint": (503, "/problems/model-not-loaded"),
    "wrong method": (405, "/problems/method-not-allowed"),
    "no model in the path": (404, "/problems/not-found"),
}


def test_every_request_gets_its_answer(client: TestClient, seven: bytes, two: bytes) -> None:
    requests = _requests(seven, two)
    assert set(requests) == set(EXPECTED)
    for name, request in requests.items():
        status, ctype, retry, body = _send(client, request)
        want_status, want = EXPECTED[name]
        assert status == want_status, (name, body)
        if status == 200:
            assert ctype == "application/json"
            got = [p.get("label", p.get("type")) for p in body["predictions"]]
            assert got == want, name
        else:
            assert ctype == "application/problem+json" and body["type"] == want, (name, body)
            assert body["status"] == status and body["detail"], name
        assert retry is None, name  # none of these can succeed by retrying


def test_query_parameters_shape_the_answer(client: TestClient, seven: bytes) -> None:
    files = {"files": ("seven.png", seven, "image/png")}
    for k in (1, 3, 10):
        (p,) = client.post(f"/predict/lenet?top_k={k}", files=files).json()["predictions"]
        assert len(p["top_k"]) == k and p["top_k"][0]["label"] == p["label"] == "7"
        assert "digit" not in p
    (p,) = client.post("/predict/lenet?include=digit", files=files).json()["predictions"]
    assert p["digit"]
    r = client.post("/predict/lenet?top_k=0&include=x", files=files).json()
    assert [e["loc"] for e in r["errors"]] == [["query", "top_k"], ["query", "include"]]


def test_names_come_back_as_sent(client: TestClient, seven: bytes) -> None:
    mp = {"content-type": "multipart/form-data; boundary=b0und"}
    body = _multipart([(_file("files", "zéro.png"), seven), (_file("files", ""), seven)])
    names = [
        p["filename"]
        for p in client.post("/predict/lenet", content=body, headers=mp).json()["predictions"]
    ]
    assert names == ["zéro.png", "upload-1"]
    raw = {"content-type": "image/png", "x-filename": "déjà.png".encode()}
    (p,) = client.post("/predict/lenet", content=seven, headers=raw).json()["predictions"]
    assert p["filename"] == "déjà.png"  # UTF-8 in the header, read as UTF-8


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        # RFC 8187's extended filename wins over the plain one (RFC 6266, section 4.3)
        ("filename=\"euro.png\"; filename*=UTF-8''%E2%82%AC%20z%C3%A9ro.png", "€ zéro.png"),
        ("filename*=utf-8'en'%E2%82%AC.png; filename=\"euro.png\"", "€.png"),
        ("filename*=UTF-8''%E2%82%AC.png", "€.png"),  # alone, it makes the part a file
        ("filename*=ISO-8859-1''d%E9j%E0.png", "déjà.png"),
        # unreadable extended names fall back to the plain one
        ("filename=\"plain.png\"; filename*=UTF-8''%FF%FE.png", "plain.png"),
        ("filename=\"plain.png\"; filename*=KOI8-R''%C1.png", "plain.png"),
        # inside quotes it is text, not a parameter
        ("filename=\"a; filename*=UTF-8''b.png\"", "a; filename*=UTF-8''b.png"),
    ],
)
def test_an_extended_filename_is_read(
    client: TestClient, seven: bytes, disposition: str, name: str
) -> None:
    mp = {"content-type": "multipart/form-data; boundary=b0und"}
    header = f'Content-Disposition: form-data; name="files"; {disposition}'
    body = _multipart([(header, seven)])
    r = client.post("/predict/lenet", content=body, headers=mp)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["filename"] == name


# What python-multipart, Starlette or Python would say; none of it may reach an answer.
LIBRARY_WORDS = re.compile(
    r"did not find|expected boundary|missing boundary|must be provided|exceeded maximum|"
    r"maximum (header|number)|boundary length|invalid multipart|exception|error|traceback|"
    r"multipart\.|python_multipart|starlette|KB\.",
    re.I,
)


def _broken_bodies(seven: bytes) -> dict[str, tuple[bytes, str]]:
    mp = "multipart/form-data; boundary=b0und"
    part = _file("files", "s.png")
    return {
        "no boundary": (b"--x\r\n", "multipart/form-data"),
        "empty boundary": (b"--\r\n", "multipart/form-data; boundary="),
        "boundary too long": (b"--x\r\n", "multipart/form-data; boundary=" + "b" * 300),
        "wrong boundary": (_multipart([(part, seven)], "other"), mp),
        "no CRLF after the boundary": (b"--b0undX" + seven, mp),
        "header without a colon": (b"--b0und\r\nno colon here\r\n\r\nx\r\n--b0und--", mp),
        "part without a name": (_multipart([("Content-Disposition: form-data", seven)]), mp),
        "part header over 4 KiB": (_multipart([(part + "; x=" + "y" * 5000, seven)]), mp),
        "nine part headers": (_multipart([(part + "\r\nX-A: 1" * 8, seven)]), mp),
        "field over 1 MiB": (_multipart([(_file("note", None), b"x" * (1024 * 1024 + 1))]), mp),
        "truncated": (_multipart([(part, seven)])[:-20], mp),
        "only a closing boundary": (b"--b0und--\r\n", mp),
        "nothing": (b"", mp),
    }


def test_broken_bodies_are_described_in_the_services_words(seven: bytes) -> None:
    conf = settings(models=("lenet",), max_files=MAX_FILES, max_upload_bytes=4 * 1024 * 1024)
    with TestClient(create_app(conf)) as c:
        for name, (body, content_type) in _broken_bodies(seven).items():
            r = c.post("/predict/lenet", content=body, headers={"content-type": content_type})
            problem = r.json()
            assert 400 <= r.status_code < 500 and problem["detail"], (name, problem)
            assert not LIBRARY_WORDS.search(r.text), (name, problem["detail"])


def test_a_repeated_header_is_refused(client: TestClient, seven: bytes) -> None:
    mp = "multipart/form-data; boundary=b0und"
    body = _multipart([(_file("files", "a.png"), seven)])
    # Content-Type, whichever the body; X-Filename where it is read: a raw image's name.
    for name, first, again in [
        ("content-type", "image/png", "image/png"),
        ("content-type", "image/png", mp),
        ("content-type", mp, "image/png"),
        ("content-type", mp, mp),
        ("x-filename", "image/png", "b.png"),
    ]:
        headers = [("content-type", first), ("x-filename", "a.png"), (name, again)]
        content = body if first == mp else seven
        r = client.post("/predict/lenet", content=content, headers=headers)
        assert r.status_code == 400 and r.json()["type"] == "/problems/bad-request", name
        assert f"2 {name.title()} headers" in r.json()["detail"]


def test_too_many_files_or_fields_name_the_limit(client: TestClient, seven: bytes) -> None:
    mp = {"content-type": "multipart/form-data; boundary=b0und"}
    files = _multipart([(_file("files", f"{i}.png"), seven) for i in range(MAX_FILES + 1)])
    fields = _multipart([(_file(f"note{i}", None), b"x") for i in range(MAX_FILES + 1)])
    for body in (files, fields):
        r = client.post("/predict/lenet", content=body, headers=mp)
        problem = r.json()
        assert r.status_code == 422 and problem["type"] == "/problems/too-many-files"
        assert problem["max_files"] == MAX_FILES
