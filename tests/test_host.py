"""ModelHost: the process settings it makes for its device, which thread places, warms and runs
each model, and a lost device told once."""

import threading
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import Tensor

import app.engine.host
import app.engine.loading
from app.engine.batching import DeviceLost
from app.engine.host import WATCHDOG_MIN_S, ModelHost
from app.metrics import Metrics
from models.checkpoint import LoadedCheckpoint
from tests.helpers import settings


class FakeCudaPredictor:
    """Stands in for a CUDA Predictor on the CPU: records which thread does what."""

    depth = 2
    threads: ClassVar[dict[str, set[str]]] = {}

    def __init__(
        self, ckpt: LoadedCheckpoint, device: torch.device, dtype: torch.dtype, max_batch: int
    ) -> None:
        self.device, self.dtype, self.on_resize = device, dtype, None
        self.fits = self.max_batch = max_batch
        self._saw("placed")

    def _saw(self, what: str) -> None:
        self.threads.setdefault(what, set()).add(threading.current_thread().name)

    def warm_up(self) -> None:
        self._saw("warmed")
        self.fits = 8  # the largest size warm-up found room for

    def launch(self, digits: Tensor) -> Tensor:
        self._saw("ran")
        return torch.full((digits.shape[0], 10), 0.1)


@pytest.fixture
def on_cuda(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The host believes its device is CUDA; TF32 switches are recorded, not made."""
    tf32: list[bool] = []
    monkeypatch.setattr(app.engine.host, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(app.engine.host, "set_tf32", tf32.append)
    monkeypatch.setattr(app.engine.loading, "Predictor", FakeCudaPredictor)
    FakeCudaPredictor.threads = {}
    return tf32


@pytest.fixture
def threads_restored() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


async def test_on_cuda_each_model_is_placed_warmed_and_run_in_its_own_thread(
    on_cuda: list[bool], threads_restored: object
) -> None:
    torch.set_num_threads(2)
    conf = settings(models=("lenet", "mnist_cnn"), dtype="float32")
    host = await ModelHost.start(conf, Metrics(), torch_threads=1)
    threads = [t._thread for t in host.threads]
    try:
        assert torch.get_num_threads() == 1  # no idle OpenMP pool spinning beside the frontends
        assert on_cuda == [False]  # DTYPE=float32 computes in float32
        for name, version in host.hosted:
            zeros = torch.zeros((3, 1, 28, 28), dtype=torch.uint8)
            assert (await host.enqueue(name, version, zeros)).shape
        seen = FakeCudaPredictor.threads
        each = {"model-lenet-v1", "model-mnist_cnn-v1", "model-mnist_cnn-v2"}  # one per version
        assert seen["placed"] == seen["warmed"] == seen["ran"] == each
        assert {h.batcher.depth for h in host.hosted.values()} == {2}
        assert {h.batcher.max_batch_size for h in host.hosted.values()} == {8}
        assert {h.batcher.largest for h in host.hosted.values()} == {conf.max_batch_size}
        assert {h.card.max_batch_size for h in host.hosted.values()} == {conf.max_batch_size}
        watchdog = max(WATCHDOG_MIN_S, conf.request_timeout_s)  # on CUDA only
        assert {h.batcher.deadline_s for h in host.hosted.values()} == {watchdog}
    finally:
        await host.stop()
    assert [t.name for t in threads] == sorted(each)
    assert not any(t.is_alive() for t in threads)  # the host stops the threads it made


async def test_on_the_cpu_models_are_warmed_beside_the_shared_thread_and_calibrated_in_it(
    monkeypatch: pytest.MonkeyPatch, threads_restored: object
) -> None:
    # Warm-up (a batch of each size: seconds for VGG on a CPU) runs off the thread the CPU
    # models share, so a reload does not hold up the others' batches; calibration switches
    # oneDNN off process-wide for its calls, so it runs in that thread, between batches.
    seen: dict[str, list[str]] = {"warm_up": [], "calibrate": []}
    Predictor = app.engine.loading.Predictor
    for step in seen:

        def recorded(self: Predictor, step: str = step, was: object = getattr(Predictor, step)):
            seen[step].append(threading.current_thread().name)
            return was(self)  # type: ignore[operator]

        monkeypatch.setattr(Predictor, step, recorded)
    host = await ModelHost.start(settings(models=("lenet", "mnist_cnn")), Metrics(), 1)
    try:
        assert {h.batcher.deadline_s for h in host.hosted.values()} == {None}  # no watchdog
        versions = len(host.hosted)  # lenet 1, mnist_cnn 1 and 2
        assert versions == 3 and seen["calibrate"] == ["models-cpu"] * versions
        assert len(seen["warm_up"]) == versions and "models-cpu" not in seen["warm_up"]
    finally:
        await host.stop()


async def test_a_lost_device_is_told_once(tmp_path: Path, threads_restored: object) -> None:
    told: list[DeviceLost] = []
    host = await ModelHost.start(
        settings(models=("lenet", "mnist_cnn")), Metrics(), 1, on_lost=told.append
    )
    try:

        def lost(x: Tensor) -> Tensor:
            raise DeviceLost("cuda:0 can run nothing more: CUDA error: misaligned address")

        for hosted in host.hosted.values():
            hosted.batcher.fn = lost
        for name in ("lenet", "mnist_cnn"):
            with pytest.raises(DeviceLost):
                await host.enqueue(name, 1, torch.zeros((1, 1, 28, 28), dtype=torch.uint8))
        assert len(told) == 1 and host.lost is told[0]
    finally:
        await host.stop()
