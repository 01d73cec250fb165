"""The shared layout: a model-owner process serving several frontends through shared memory."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.engine.batching import DeviceLost
from app.engine.client import RemoteEngine
from app.engine.owner import _Frontend
from app.engine.owner_process import OwnerProcess
from app.engine.wire import (
    ACK,
    HEADER,
    RESULT,
    SUBMIT,
    Kind,
    Outcome,
    Slab,
    create_mapped,
    failure_from,
    frame,
    frame_json,
    read_message,
)
from app.failures import Failure, ServiceError
from app.main import create_app
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings, shared_app


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:256, 0].numpy()


@asynccontextmanager
async def owner(**over: object) -> AsyncIterator[OwnerProcess]:
    """A model owner in a run folder of its own, stopped and cleaned up afterwards."""
    with tempfile.TemporaryDirectory() as run_dir:
        proc = await asyncio.to_thread(OwnerProcess.start, settings(**over), Path(run_dir))
        try:
            yield proc
        finally:
            await asyncio.to_thread(proc.stop)


def test_both_layouts_give_the_same_answers(mnist_test: MnistSplit) -> None:
    files = [("files", (f"{i}.png", png(mnist_test.images[i, 0].numpy()))) for i in range(16)]
    answers = {}
    conf = settings(models=("lenet",))
    with (
        shared_app(conf) as (app, _),
        TestClient(app) as remote,
        TestClient(create_app(conf)) as local,
    ):
        for c in (local, remote):
            kind = type(c.app.state.zoo.engine).__name__  # type: ignore[attr-defined]
            r = c.post("/predict/lenet", files=files)
            assert r.status_code == 200, r.text
            answers[kind] = r.json()["predictions"]
    local, remote = answers["LocalEngine"], answers["RemoteEngine"]
    assert [p["label"] for p in local] == [p["label"] for p in remote]
    assert [p["label"] for p in local] == [str(int(y)) for y in mnist_test.labels[:16]]
    for a, b in zip(local, remote, strict=True):
        assert np.allclose(a["probabilities"], b["probabilities"], atol=1e-5)


async def test_two_frontends_share_one_queue_and_its_bound(digits: np.ndarray) -> None:
    # One image per batch: a's 2000 images keep the owner busy for thousands of model calls,
    # so b's request, sent as soon as b sees them, meets a's backlog whatever the load.
    many = np.resize(digits, (2000, *digits.shape[1:]))
    bounds = dict(max_queue=2000, max_files=2000)
    async with owner(models=("mnist_cnn",), max_batch_size=1, **bounds) as o:
        conf = settings(models=("mnist_cnn",), **bounds)
        a = await RemoteEngine.connect(o.socket, conf)
        b = await RemoteEngine.connect(o.socket, conf)
        try:
            first = asyncio.create_task(a.classify("mnist_cnn", 1, many))
            async with asyncio.timeout(30):
                while b.queued("mnist_cnn", 1) == 0:  # b sees a's images through shared memory
                    await asyncio.sleep(0.001)
            with pytest.raises(ServiceError, match="queue is full") as refused:
                await b.classify("mnist_cnn", 1, many)  # any of a's still queued: no room
            assert refused.value.failure is Failure.QUEUE_FULL
            probs = await first
            assert probs.shape == (2000, 10) and a.queued("mnist_cnn", 1) == 0
            again = await b.classify("mnist_cnn", 1, many[:60])  # room again
            assert np.array_equal(again, probs[:60])
        finally:
            await a.close()
            await b.close()


async def test_a_request_that_gives_up_is_withdrawn_and_frees_its_slots(
    digits: np.ndarray,
) -> None:
    async with owner(models=("mnist_cnn",), max_batch_size=1) as o:
        client = await RemoteEngine.connect(o.socket, settings(max_queue=256, max_files=256))
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.classify("mnist_cnn", 1, digits[:256]), 0.02)
            deadline = time.monotonic() + 10
            while client._slots.used and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert client._slots.used == 0  # the owner answered CANCELLED; the slab is free
            # Withdrawn rows never reached the model: the queue empties long before 256
            # single-image batches of mnist_cnn could have run.
            assert client.queued("mnist_cnn", 1) == 0
            assert (await client.classify("mnist_cnn", 1, digits[:3])).shape == (3, 10)
        finally:
            await client.close()


@pytest.fixture
def shared_client() -> Iterator[tuple[TestClient, OwnerProcess]]:
    with shared_app(settings(models=("lenet",))) as (app, owner), TestClient(app) as c:
        yield c, owner


def test_losing_the_model_owner_answers_503_and_drops_readiness(
    shared_client: tuple[TestClient, OwnerProcess], mnist_test: MnistSplit
) -> None:
    client, owner_process = shared_client
    seven = png(mnist_test.images[0, 0].numpy())
    assert client.post("/predict/lenet", files={"files": seven}).status_code == 200
    os.kill(owner_process.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.get("/health/ready").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/health/ready").status_code == 503
    r = client.post("/predict/lenet", files={"files": seven})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert client.get("/health/live").status_code == 200


async def test_a_closed_engine_refuses_new_work(digits: np.ndarray) -> None:
    async with owner(models=("lenet",)) as o:
        client = await RemoteEngine.connect(o.socket, settings(max_queue=64, max_files=64))
        await client.close()
        with pytest.raises(ServiceError) as refused:
            await client.classify("lenet", 1, digits[:1])
        assert refused.value.failure is Failure.SHUTTING_DOWN


def test_the_owner_passes_a_refusal_on_and_hides_a_model_error() -> None:
    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            written.append(data)

    frontend = _Frontend(None, Writer())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        for rid, exc in [
            (1, Failure.SHUTTING_DOWN.error("lenet cannot run: its device failed")),
            (2, DeviceLost("cuda:0 can run nothing more: CUDA error: an illegal memory access")),
        ]:
            future = loop.create_future()
            future.set_exception(exc)
            frontend.done(rid, 0, 1, future)
    finally:
        loop.close()
    replies = [failure_from(w[HEADER.size + RESULT.size :]) for w in written]
    assert [r.failure for r in replies] == [Failure.SHUTTING_DOWN, Failure.INFERENCE_FAILED]
    assert replies[0].detail == "lenet cannot run: its device failed"  # a retry elsewhere works
    assert "illegal" not in replies[1].detail  # internals stay in the owner's log


async def test_the_owner_keeps_a_version_until_every_frontend_has_the_new_catalogue(
    digits: np.ndarray, tmp_path: Path
) -> None:
    shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "lenet.safetensors")
    async with owner(models=("lenet",), weights_dir=tmp_path) as o:
        # Frontend a speaks the wire by hand, so that it can be slow to take a new catalogue.
        reader, writer = await asyncio.open_unix_connection(str(o.socket))
        writer.write(frame(Kind.HELLO, b""))
        welcome = json.loads((await read_message(reader))[1])
        path, memory = create_mapped(Slab.size(8, welcome["classes"]), tmp_path, "slab-")
        slab = Slab(memory, 8, welcome["classes"])
        writer.write(frame_json(Kind.ATTACH, {"slab": str(path), "slots": 8}))
        assert (await read_message(reader))[0] == Kind.ATTACHED
        slab.digits[0] = digits[0]

        async def submit(rid: int, version: int) -> tuple[int, bytes]:
            writer.write(frame(Kind.SUBMIT, SUBMIT.pack(rid, 0, version, 0, 1)))
            kind, payload = await read_message(reader)
            assert kind == Kind.RESULT and RESULT.unpack_from(payload)[0] == rid
            return RESULT.unpack_from(payload)[1], payload[RESULT.size :]

        b = await RemoteEngine.connect(o.socket, settings(max_queue=64, max_files=64))
        try:
            (tmp_path / "lenet").mkdir()  # a rolling deploy: version 2 in, version 1 out
            shutil.copy(WEIGHTS / "lenet.safetensors", tmp_path / "lenet" / "2.safetensors")
            (tmp_path / "lenet.safetensors").unlink()
            reloading = asyncio.create_task(b.reload())
            kind, payload = await read_message(reader)
            assert kind == Kind.CATALOG  # a has it, and has not said so yet
            assert (await submit(1, 1))[0] == Outcome.OK  # so version 1 still answers it
            assert not reloading.done()  # the reload waits for a
            writer.write(frame(Kind.CATALOG_ACK, ACK.pack(json.loads(payload)["generation"])))
            report = await asyncio.wait_for(reloading, 30)
            assert [c.change for c in report.changes] == ["added", "removed"]
            outcome, detail = await submit(2, 1)  # taken: now version 1 is gone
            assert outcome == Outcome.FAILED
            assert failure_from(detail).failure is Failure.SHUTTING_DOWN
            assert (await b.classify("lenet", 2, digits[:1])).shape == (1, 10)
        finally:
            await b.close()
            writer.close()


async def test_versions_with_more_classes_share_one_slab(digits: np.ndarray) -> None:
    # mnist_cnn version 2 has two outlier classes: the slab is as wide as it, and version 1's
    # rows come back with its own ten.
    async with owner(models=("mnist_cnn",)) as o:
        client = await RemoteEngine.connect(o.socket, settings(models=("mnist_cnn",)))
        try:
            first = await client.classify("mnist_cnn", 1, digits[:5])
            second = await client.classify("mnist_cnn", 2, digits[:5])
            again = await client.classify("mnist_cnn", 1, digits[:5])  # no stale columns
            assert first.shape == again.shape == (5, 10) and second.shape == (5, 12)
            np.testing.assert_allclose(first.sum(1), 1, rtol=1e-5)
            assert np.array_equal(first, again)
        finally:
            await client.close()
