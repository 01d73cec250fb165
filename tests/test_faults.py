"""Faults and overload through the ASGI app: timeouts, full queues, failing models, bad weights."""

import asyncio
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

import app.engine.host
import app.engine.loading
import app.engine.local
import app.frontend.uploads
from app.engine.batching import DeviceLost
from app.engine.predictor import Predictor
from app.frontend.uploads import LINGER_BYTES, discard_body
from app.main import create_app
from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


def _batcher(app: FastAPI, name: str) -> object:
    return app.state.zoo.engine.host.hosted[name, 1].batcher


def _wrap_model(app: FastAPI, name: str, wrap: Callable[[Callable], Callable]) -> None:
    batcher = _batcher(app, name)
    batcher.fn = wrap(batcher.fn)  # type: ignore[attr-defined]


async def test_slow_inference_times_out_with_504(seven: bytes) -> None:
    app = create_app(settings(models=("lenet",), request_timeout_s=0.2))
    async with _client(app) as c:

        def slow(fn: Callable) -> Callable:
            return lambda x: (time.sleep(0.5), fn(x))[1]

        _wrap_model(app, "lenet", slow)
        r = await c.post("/predict/lenet", files={"files": seven})
        assert r.status_code == 504 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/inference-timeout"


async def test_flood_gets_503_with_retry_after_then_recovers(seven: bytes) -> None:
    app = create_app(settings(models=("lenet",), max_queue=4, max_files=4, max_batch_size=2))
    async with _client(app) as c:
        original = _batcher(app, "lenet").fn  # type: ignore[attr-defined]
        _wrap_model(app, "lenet", lambda fn: lambda x: (time.sleep(0.02), fn(x))[1])
        rs = await asyncio.gather(
            *(c.post("/predict/lenet", files={"files": seven}) for _ in range(40))
        )
        codes = [r.status_code for r in rs]
        assert set(codes) == {200, 503}, codes
        for r in rs:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["type"] == "/problems/queue-full"
            else:
                assert r.json()["predictions"][0]["label"] == "7"
        _batcher(app, "lenet").fn = original  # type: ignore[attr-defined]
        again = await asyncio.gather(
            *(c.post("/predict/lenet", files={"files": seven}) for _ in range(4))
        )
        assert [r.status_code for r in again] == [200] * 4  # recovered at once


async def test_a_model_that_raises_fails_only_its_batch(seven: bytes) -> None:
    app = create_app(settings(models=("lenet",)))
    async with _client(app) as c:
        calls = {"n": 0}

        def flaky(fn: Callable) -> Callable:
            def call(x: torch.Tensor) -> torch.Tensor:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")
                return fn(x)  # type: ignore[no-any-return]

            return call

        _wrap_model(app, "lenet", flaky)
        r = await c.post("/predict/lenet", files={"files": seven})
        assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
        assert "illegal memory" not in r.text  # internals stay in the log
        r = await c.post("/predict/lenet", files={"files": seven})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "7"
        assert (await c.get("/health/ready")).status_code == 200


async def test_a_lost_device_takes_readiness_down_and_ends_the_worker(
    monkeypatch: pytest.MonkeyPatch, seven: bytes
) -> None:
    ended: list[str] = []
    monkeypatch.setattr(app.engine.local, "fail_process", ended.append)  # not SIGTERM: tests
    application = create_app(settings(models=("lenet",)))
    async with _client(application) as c:
        assert (await c.get("/health/ready")).status_code == 200

        def lose(fn: Callable) -> Callable:
            def call(x: torch.Tensor) -> torch.Tensor:
                raise DeviceLost("cuda:0 can run nothing more: CUDA error: illegal memory access")

            return call

        _wrap_model(application, "lenet", lose)
        r = await c.post("/predict/lenet", files={"files": seven})
        assert r.status_code == 500 and r.json()["type"] == "/problems/inference-failed"
        assert (await c.get("/health/ready")).status_code == 503
        assert ended and "device failed" in ended[0]
        r = await c.post("/predict/lenet", files={"files": seven})  # another replica can answer
        assert r.status_code == 503 and r.json()["type"] == "/problems/shutting-down"


async def test_a_hung_batch_takes_readiness_down_and_ends_the_worker(
    monkeypatch: pytest.MonkeyPatch, seven: bytes
) -> None:
    ended: list[str] = []
    monkeypatch.setattr(app.engine.local, "fail_process", ended.append)  # not SIGTERM: tests
    # The watchdog is on CUDA only; here it watches the CPU model, with a short deadline.
    monkeypatch.setattr(app.engine.host, "watchdog_s", lambda settings, device: 0.5)
    release = threading.Event()  # lets the stuck thread go once the test is over

    class Hung:
        def wait(self) -> torch.Tensor:
            release.wait()
            raise RuntimeError("released")

    application = create_app(settings(models=("lenet",)))
    try:
        async with _client(application) as c:
            assert (await c.get("/health/ready")).status_code == 200
            _wrap_model(application, "lenet", lambda fn: lambda x: Hung())
            started = time.perf_counter()
            r = await asyncio.wait_for(c.post("/predict/lenet", files={"files": seven}), 10)
            assert r.status_code == 500 and r.json()["type"] == "/problems/inference-failed"
            assert time.perf_counter() - started < 5
            assert (await c.get("/health/ready")).status_code == 503
            assert ended and "device failed" in ended[0] and "watchdog" in ended[0]
        # The lifespan ended although a thread is still stuck in the "device".
    finally:
        release.set()


def test_out_of_memory_splits_the_batch() -> None:
    ckpt = load_checkpoint(WEIGHTS / "lenet.safetensors")
    predictor = Predictor(ckpt, torch.device("cpu"), torch.float32, 64)
    sizes: list[int] = []
    forward = predictor.probabilities

    def limited(x: torch.Tensor) -> torch.Tensor:
        sizes.append(int(x.shape[0]))
        if x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    predictor.probabilities = limited  # type: ignore[method-assign]
    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    out = predictor(x)
    assert out.shape == (16, 10)
    assert torch.allclose(out, forward(x), atol=1e-6)
    assert sizes[:3] == [16, 8, 4]

    def always_oom(x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory")

    predictor.probabilities = always_oom  # type: ignore[method-assign]
    with pytest.raises(torch.OutOfMemoryError):  # a single image cannot be split further
        predictor(x[:1])


def test_a_model_that_fails_to_start_keeps_readiness_down(
    monkeypatch: pytest.MonkeyPatch, seven: bytes
) -> None:
    class BrokenOnThisDevice(Predictor):
        def __init__(self, ckpt: object, *args: object) -> None:
            if ckpt.meta.architecture == "lenet":  # type: ignore[attr-defined]
                raise RuntimeError("CUDA error: no kernel image is available for execution")
            super().__init__(ckpt, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(app.engine.loading, "Predictor", BrokenOnThisDevice)
    with TestClient(create_app(settings(models=("lenet", "mnist_cnn")))) as c:
        ready = c.get("/health/ready")
        # lenet has a valid checkpoint but could not start: not ready, though mnist_cnn serves.
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "models": {"lenet": "failed", "mnist_cnn": "ready"},
            "versions": {"lenet": {"1": "failed"}, "mnist_cnn": {"1": "ready", "2": "ready"}},
        }
        info = c.get("/models/lenet").json()
        assert (
            info["status"] == "failed"
            and info["reason"] == "could not start on cpu (the log has why)"
        )
        assert c.post("/predict/lenet", files={"files": seven}).status_code == 503
        r = c.post("/predict/mnist_cnn", files={"files": seven})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "7"


def test_checkpoint_changed_on_disk_is_refused_while_others_serve(
    tmp_path: Path, seven: bytes
) -> None:
    for name in ("lenet", "mnist_cnn"):
        shutil.copy(WEIGHTS / f"{name}.safetensors", tmp_path)
    data = bytearray((tmp_path / "lenet.safetensors").read_bytes())
    data[-100] ^= 0x01  # one flipped bit in the weights
    (tmp_path / "lenet.safetensors").write_bytes(bytes(data))
    with TestClient(create_app(settings(weights_dir=tmp_path, models=("lenet", "mnist_cnn")))) as c:
        info = c.get("/models/lenet").json()
        assert info["status"] == "invalid" and "modified after it was written" in info["reason"]
        r = c.post("/predict/lenet", files={"files": seven})
        assert r.status_code == 503 and "modified after it was written" in r.json()["detail"]
        r = c.post("/predict/mnist_cnn", files={"files": seven})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "7"
        ready = c.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["models"] == {"lenet": "invalid", "mnist_cnn": "ready"}


def test_body_over_the_limit_is_refused_before_reading(seven: bytes) -> None:
    with TestClient(create_app(settings(models=("lenet",), max_upload_bytes=4096))) as c:
        r = c.post("/predict/lenet", files={"files": ("big.png", b"x" * 10_000)})
        assert r.status_code == 413 and r.json()["limit_bytes"] == 4096
        assert r.json()["detail"] == "request body exceeds the 4096-byte limit (MAX_UPLOAD_BYTES)"

        def chunks() -> object:  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b"y" * 1000

        r = c.post("/predict/lenet", content=chunks(), headers={"content-type": "image/png"})
        assert r.status_code == 413
        assert c.post("/predict/lenet", files={"files": seven}).status_code == 200


async def test_full_queue_refuses_before_decoding(seven: bytes) -> None:
    app = create_app(settings(models=("lenet",), max_queue=2, max_files=2, max_batch_size=2))
    async with _client(app) as c:
        entered, release = threading.Event(), threading.Event()

        def gated(fn: Callable) -> Callable:
            def call(x: torch.Tensor) -> torch.Tensor:
                entered.set()
                release.wait(30)
                return fn(x)  # type: ignore[no-any-return]

            return call

        _wrap_model(app, "lenet", gated)
        busy = asyncio.create_task(c.post("/predict/lenet", files={"files": seven}))
        try:
            assert await asyncio.to_thread(entered.wait, 30)  # its image is in the model
            queued = asyncio.create_task(
                c.post("/predict/lenet", files=[("files", seven), ("files", seven)])
            )
            batcher = _batcher(app, "lenet")
            async with asyncio.timeout(30):  # two more images fill the queue
                while batcher.queued_images < 2:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)
            # Undecodable, yet 503 rather than 422: the queue was checked before any decoding.
            r = await c.post("/predict/lenet", files={"files": ("x.png", b"not an image")})
            assert r.status_code == 503 and r.json()["type"] == "/problems/queue-full"
        finally:
            release.set()
        assert [t.status_code for t in await asyncio.gather(busy, queued)] == [200, 200]


@pytest.mark.parametrize(
    ("declared", "expect", "read"),
    [
        (10_000, b"100-continue", 0),  # the client waits for the answer: read nothing
        (10_000, None, 10_000),  # it sends regardless: read and drop it, then answer
        (LINGER_BYTES + 1, None, 0),  # more than is worth reading: answer, then close
    ],
)
async def test_a_declared_oversized_body_never_reaches_the_app(
    declared: int, expect: bytes | None, read: int
) -> None:
    app = create_app(settings(models=("lenet",), max_upload_bytes=4096))
    async with app.router.lifespan_context(app):
        pulled: list[int] = []
        sent: list[dict] = []

        async def receive() -> dict:
            chunk = min(1000, declared - sum(pulled))
            pulled.append(chunk)
            return {
                "type": "http.request",
                "body": b"x" * chunk,
                "more_body": sum(pulled) < declared,
            }

        async def send(message: dict) -> None:
            sent.append(message)

        headers = [
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"content-length", str(declared).encode()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict/lenet",
            "raw_path": b"/predict/lenet",
            "root_path": "",
            "query_string": b"",
            "headers": headers + ([(b"expect", expect)] if expect else []),
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 413
        assert sum(pulled) == read
        closes = (b"connection", b"close") in sent[0]["headers"]
        assert closes == (read == 0)  # kept alive only when the whole body was read
        requests = app.state.metrics.requests.collect()[0].samples
        assert not any(s.value for s in requests), "the predict route ran"


def _body(*chunks: bytes, stall: bool = False) -> Callable[[], Awaitable[dict]]:
    """An ASGI receive() that yields ``chunks``, then ends the body or (``stall``) waits."""
    left = list(chunks)

    async def receive() -> dict:
        if not left:
            await asyncio.sleep(3600)  # a client that sends no more
        chunk = left.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(left) or stall}

    return receive


async def test_discarding_a_refused_body_is_bounded_by_size_and_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await discard_body(_body(b"x" * 500, b"x" * 500), max_bytes=1000)  # all of it
    assert await discard_body(_body(b"x" * 1000, b""), max_bytes=1000)  # an empty last chunk
    assert not await discard_body(_body(*[b"x" * 500] * 4), max_bytes=1000)  # more: give up
    monkeypatch.setattr(app.frontend.uploads, "LINGER_S", 0.2)
    async with asyncio.timeout(2):  # unbounded, it would wait for ever: fail instead
        assert not await discard_body(_body(b"x" * 10, stall=True), max_bytes=1000)


def _trickled(chunk: bytes, every_s: float, n: int) -> Callable[[], Awaitable[dict]]:
    """An ASGI receive() that yields ``n`` chunks, one every ``every_s``."""
    sent = [0]

    async def receive() -> dict:
        await asyncio.sleep(every_s)
        sent[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": sent[0] < n}

    return receive


@pytest.mark.parametrize(
    ("chunk", "every_s", "status"),
    [
        (b"x", 0.1, 408),  # 10 bytes/s: never a pause, yet too slow once the grace is over
        (b"x" * 60, 0.1, 422),  # 600 bytes/s: keeps earning time, read to the end
    ],
)
async def test_a_body_must_keep_a_pace_after_its_grace(
    chunk: bytes, every_s: float, status: int
) -> None:
    app = create_app(settings(models=("lenet",), body_timeout_s=0.5, min_body_rate=500))
    async with app.router.lifespan_context(app):
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        n = 20  # 2 s of body: four times the grace
        headers = [(b"content-type", b"image/png"), (b"content-length", b"%d" % (n * len(chunk)))]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict/lenet",
            "raw_path": b"/predict/lenet",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        started = time.monotonic()
        await app(scope, _trickled(chunk, every_s, n), send)  # type: ignore[arg-type]
        took = time.monotonic() - started
    assert sent[0]["status"] == status
    if status == 408:
        problem = json.loads(sent[1]["body"])
        assert "too slow" in problem["detail"] and "MIN_BODY_RATE" in problem["detail"]
        assert 0.5 <= took < 1.0  # at the grace's end, not at the body's
        assert (b"connection", b"close") in sent[0]["headers"]
