"""Every client sees the 413 for an over-limit body, through real uvicorn, whatever it sends."""

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import GRACEFUL, Server, start_service, stop_server

LIMIT = 1024 * 1024
BODY = 24 * LIMIT  # more than the sockets buffer: a client sending it all meets a reset


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS="lenet", WORKERS="1", MAX_UPLOAD_BYTES=str(LIMIT))
    yield s
    assert stop_server(s) in GRACEFUL


def _is_413(status: int, body: bytes) -> None:
    assert status == 413, body[:200]
    problem = json.loads(body)
    assert problem["type"] == "/problems/content-too-large" and problem["limit_bytes"] == LIMIT


@pytest.fixture(autouse=True)
def still_healthy(server: Server) -> Iterator[None]:
    yield
    assert httpx.get(f"{server.url}/health/ready").status_code == 200


def test_httpx_without_expect_gets_the_413(server: Server) -> None:
    files = {"files": ("big.png", b"\0" * BODY, "image/png")}
    r = httpx.post(f"{server.url}/predict/lenet", files=files, timeout=30)
    _is_413(r.status_code, r.content)
    assert r.headers.get("connection") != "close"  # the body was read: the connection lives


def test_urllib_gets_the_413(server: Server) -> None:
    request = urllib.request.Request(
        f"{server.url}/predict/lenet", data=b"\0" * BODY, headers={"Content-Type": "image/png"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    _is_413(caught.value.code, caught.value.read())


def _chunks() -> Iterator[bytes]:
    for _ in range(BODY // 65536):
        yield b"\0" * 65536


def test_a_chunked_body_gets_the_413(server: Server) -> None:
    request = urllib.request.Request(  # no length: urllib sends it chunked
        f"{server.url}/predict/lenet", data=_chunks(), headers={"Content-Type": "image/png"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    _is_413(caught.value.code, caught.value.read())
    with httpx.Client(timeout=30) as c:
        headers = {"content-type": "image/png"}
        r = c.post(f"{server.url}/predict/lenet", content=_chunks(), headers=headers)
        _is_413(r.status_code, r.content)
        assert r.headers.get("connection") != "close"


def test_curl_with_expect_gets_the_413_without_sending_the_body(
    server: Server, tmp_path: Path
) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * BODY)
    out = subprocess.run(
        [
            *("curl", "-sS", "-o", str(tmp_path / "answer"), "-w", "%{http_code} %{size_upload}"),
            *("-H", "Expect: 100-continue", "-H", "Content-Type: image/png"),
            *("--data-binary", f"@{big}", f"{server.url}/predict/lenet"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    status, uploaded = out.stdout.split()
    _is_413(int(status), (tmp_path / "answer").read_bytes())
    assert int(uploaded) < BODY  # curl waited for the answer instead of sending it all


def test_answers_that_need_no_body_reach_the_client_too() -> None:
    """A 401 or a 404 goes out before the body is read: the rest is dropped first all the same."""
    s = start_service(MODELS="lenet", WORKERS="1", API_KEYS="k3y")  # the 20 MiB default limit
    try:
        for path, key, status in [("/predict/lenet", None, 401), ("/predict/resnet", "k3y", 404)]:
            headers = {"Content-Type": "image/png"} | (
                {"Authorization": f"Bearer {key}"} if key else {}
            )
            request = urllib.request.Request(
                f"{s.url}{path}", data=b"\0" * (16 * LIMIT), headers=headers
            )
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            assert caught.value.code == status
            assert json.loads(caught.value.read())["status"] == status
    finally:
        assert stop_server(s) in GRACEFUL
