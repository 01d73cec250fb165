"""End to end against ``python -m app``, in both layouts (a model copy per worker, and the shared
model owner): concurrency, batching across workers, graceful shutdown."""

import asyncio
import json
import signal
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from app.digits.preprocess import preprocess
from benchmarks.wrk import CONTENT_TYPE, multipart
from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png
from tests.server import GRACEFUL, Server, start_service, stop_server

ENGINES = ["worker", "shared"]


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = start_service(MODELS="lenet", MAX_BATCH_SIZE="64", ENGINE=request.param, WORKERS="2")
    yield s
    assert stop_server(s) in GRACEFUL


def expected_labels(images: list[bytes]) -> list[int]:
    """What lenet says when called directly on the same preprocessed digits."""
    ckpt = load_checkpoint(WEIGHTS / "lenet.safetensors")
    x = torch.from_numpy(np.stack([preprocess(b) for b in images]))[:, None]
    with torch.inference_mode():
        return ckpt.model(ckpt.transform(x)).argmax(1).tolist()  # type: ignore[no-any-return]


async def _post_all(url: str, images: list[bytes], concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/predict/lenet", files={"files": (f"{i}.png", img, "image/png")})
                for i, img in enumerate(images)
            )
        )


def _batch_counts(metrics: str) -> tuple[float, float]:
    """(batches of size 1, all batches) from the batch-size histogram."""
    ones = total = 0.0
    for line in metrics.splitlines():
        if line.startswith('zoo_batch_size_bucket{le="1.0",model="lenet"}'):
            ones = float(line.split()[-1])
        if line.startswith('zoo_batch_size_count{model="lenet"}'):
            total = float(line.split()[-1])
    return ones, total


def test_200_concurrent_requests_all_answered_correctly_in_batches(
    server: Server, mnist_test: MnistSplit
) -> None:
    images = [png(mnist_test.images[i, 0].numpy()) for i in range(200)]
    before = _batch_counts(httpx.get(f"{server.url}/metrics").text)
    responses = asyncio.run(_post_all(server.url, images, concurrency=200))
    assert [r.status_code for r in responses] == [200] * 200
    got = [int(r.json()["predictions"][0]["label"]) for r in responses]
    assert got == expected_labels(images)
    assert [r.json()["predictions"][0]["filename"] for r in responses] == [
        f"{i}.png" for i in range(200)
    ]
    ones, total = _batch_counts(httpx.get(f"{server.url}/metrics").text)
    batches, singles = total - before[1], ones - before[0]
    assert batches < 200 and batches - singles > 0  # some model calls carried several images


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(lines[0].split()[1]), body


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_lets_accepted_requests_finish(mnist_test: MnistSplit, engine: str) -> None:
    s = start_service(MODELS="lenet", MAX_BATCH_SIZE="16", ENGINE=engine, WORKERS="2")
    port = int(s.url.rsplit(":", 1)[1])
    body = multipart([png(mnist_test.images[i, 0].numpy()) for i in range(64)], 0)
    head = (
        f"POST /predict/lenet HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(32)]
    try:
        for sock in socks:
            sock.sendall(head)
        for sock in socks:  # "100 Continue": the app is reading this request's body
            assert _read_response_head(sock).startswith(b"HTTP/1.1 100")
        s.proc.send_signal(signal.SIGTERM)  # every request is accepted and being worked on
        for sock in socks:
            sock.sendall(body)
        answers = [_read_response(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert [status for status, _ in answers] == [200] * 32
    assert all(len(json.loads(b)["predictions"]) == 64 for _, b in answers)
    assert s.proc.wait(timeout=60) in GRACEFUL


def _read_response_head(sock: socket.socket) -> bytes:
    """An interim response (100 Continue): its status line and headers."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data
