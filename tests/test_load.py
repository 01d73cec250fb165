"""Load and overload through ``python -m app`` in both layouts: nothing accepted is lost; floods
get 503s (the queue bound holds across worker processes), never hangs."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png
from tests.server import GRACEFUL, Server, start_service, stop_server


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> list[tuple[bytes, str]]:
    """300 test digits the committed lenet classifies correctly: every label must come back."""
    ckpt = load_checkpoint(WEIGHTS / "lenet.safetensors")
    with torch.no_grad():
        predicted = ckpt.model(ckpt.transform(mnist_test.images[:400])).argmax(1)
    right = (predicted == mnist_test.labels[:400]).nonzero()[:300, 0].tolist()
    assert len(right) == 300
    return [(png(mnist_test.images[i, 0].numpy()), str(int(mnist_test.labels[i]))) for i in right]


async def _drive(
    url: str, bodies: list[list[tuple[str, tuple[str, bytes, str]]]], concurrency: int
) -> list[httpx.Response | Exception]:
    """POST every body with at most ``concurrency`` in flight; exceptions are kept, not raised."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(files: list) -> httpx.Response | Exception:
            async with sem:
                try:
                    return await client.post("/predict/lenet", files=files)
                except httpx.HTTPError as exc:
                    return exc

        return await asyncio.gather(*(one(b) for b in bodies))


ENGINES = ["worker", "shared"]


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = start_service(MODELS="lenet", ENGINE=request.param, WORKERS="2")
    yield s
    assert stop_server(s) in GRACEFUL


def test_2000_requests_at_concurrency_64_lose_nothing(
    server: Server, digits: list[tuple[bytes, str]]
) -> None:
    picks = [digits[i % len(digits)] for i in range(2000)]
    bodies = [[("files", (f"{i}.png", img, "image/png"))] for i, (img, _) in enumerate(picks)]
    results = asyncio.run(_drive(server.url, bodies, concurrency=64))
    errors = [r for r in results if not isinstance(r, httpx.Response)]
    assert not errors, errors[:3]
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert [r.status_code for r in responses] == [200] * 2000
    got = [
        (r.json()["predictions"][0]["filename"], r.json()["predictions"][0]["label"])
        for r in responses
    ]
    assert got == [(f"{i}.png", label) for i, (_, label) in enumerate(picks)]


@pytest.mark.parametrize("engine", ENGINES)
def test_flood_on_a_small_queue_gets_503s_never_hangs_and_recovers(
    digits: list[tuple[bytes, str]], engine: str
) -> None:
    s = start_service(
        MODELS="lenet", MAX_QUEUE="8", MAX_FILES="8", MAX_BATCH_SIZE="8", ENGINE=engine, WORKERS="2"
    )
    try:
        body = [("files", (f"{i}.png", img, "image/png")) for i, (img, _) in enumerate(digits[:8])]
        labels = [label for _, label in digits[:8]]
        results = asyncio.run(asyncio.wait_for(_drive(s.url, [body] * 400, 64), timeout=120))
        assert all(isinstance(r, httpx.Response) for r in results), "dropped connections"
        responses = [r for r in results if isinstance(r, httpx.Response)]
        codes = {r.status_code for r in responses}
        assert codes == {200, 503}, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"].isdigit()
                assert r.headers["content-type"] == "application/problem+json"
            else:
                assert [p["label"] for p in r.json()["predictions"]] == labels
        after = asyncio.run(_drive(s.url, [body] * 20, 1))  # the flood is over
        assert [r.status_code for r in after if isinstance(r, httpx.Response)] == [200] * 20
        assert httpx.get(f"{s.url}/health/ready").status_code == 200
    finally:
        assert stop_server(s) in GRACEFUL
