"""End to end against ``python -m app``, in both layouts (a model copy per worker, and the shared
model owner): concurrency, batching across workers, graceful shutdown."""

import asyncio
import signal
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from app.digits.preprocess import preprocess
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


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_lets_accepted_requests_finish(mnist_test: MnistSplit, engine: str) -> None:
    s = start_service(MODELS="lenet", MAX_BATCH_SIZE="16", ENGINE=engine, WORKERS="2")
    body = [
        ("files", (f"{i}.png", png(mnist_test.images[i, 0].numpy()), "image/png"))
        for i in range(64)
    ]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=s.url, timeout=60, limits=httpx.Limits(max_connections=32)
        ) as client:
            tasks = [
                asyncio.create_task(client.post("/predict/lenet", files=body)) for _ in range(32)
            ]
            await asyncio.sleep(0.3)  # every request is sent and being worked on
            s.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 32
    assert all(len(r.json()["predictions"]) == 64 for r in responses)
    assert s.proc.wait(timeout=60) in GRACEFUL
