"""The model call's logic that CUDA relies on, run on the CPU: out-of-memory recovery in the
staging ring, which errors lose the device, the 224x224 input made once, the dtype per GPU."""

import weakref

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import app.engine.predictor
from app.engine.predictor import (
    RING,
    Predictor,
    _CudaPending,
    _Ring,
    allocation_failure,
    bucket_sizes,
    device_lost,
)
from models import runtime
from models.checkpoint import LoadedCheckpoint, load_checkpoint
from tests.helpers import WEIGHTS, random_checkpoint


class FakePending:
    def __init__(self, staging: "FakeStaging", slot: int, rows: Tensor) -> None:
        self.staging, self.slot, self.rows = staging, slot, rows

    def wait(self) -> Tensor:
        self.staging.in_flight.discard(self.slot)
        return self.rows


class FakeStaging:
    """The CUDA staging ring's bookkeeping on the CPU, with a GPU that holds ``fits`` images:
    which slot each launch used, which slots are in flight, what a failed forward held."""

    def __init__(self, fits: int, error: str | None = None) -> None:
        self.fits, self.next = fits, 0
        self.error = error  # a RuntimeError's message (cuBLAS, cuDNN); None: OutOfMemoryError
        self.launched: list[tuple[int, int]] = []  # (slot, images)
        self.in_flight: set[int] = set()
        self.held: list[weakref.ref[Tensor]] = []  # a failed forward's activations

    def take(self) -> int:
        k, self.next = self.next, (self.next + 1) % RING
        return k

    def launch(self, k: int, digits: Tensor, probabilities: object) -> FakePending:
        assert k not in self.in_flight, f"slot {k} is reused while its batch is in flight"
        assert all(ref() is None for ref in self.held), "a failed forward's tensors still live"
        if digits.shape[0] > self.fits:
            activations = torch.empty(1 << 16)
            self.held.append(weakref.ref(activations))
            if self.error is not None:
                raise RuntimeError(self.error)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.launched.append((k, int(digits.shape[0])))
        self.in_flight.add(k)
        return FakePending(self, k, probabilities(digits))  # type: ignore[operator]


@pytest.fixture(scope="module")
def lenet() -> LoadedCheckpoint:
    return load_checkpoint(WEIGHTS / "lenet.safetensors")


def _on_fake_gpu(lenet: LoadedCheckpoint, fits: int) -> tuple[Predictor, FakeStaging, list[int]]:
    """A CPU predictor whose staging runs out of memory above ``fits`` rows, as a GPU would, and
    the list that hears each new ``fits``."""
    predictor = Predictor(lenet, torch.device("cpu"), torch.float32, 64)
    staging = FakeStaging(fits=fits)
    predictor._cuda = staging  # type: ignore[assignment]
    sizes: list[int] = []
    predictor.on_resize = sizes.append
    return predictor, staging, sizes


def test_out_of_memory_recovers_at_the_largest_size_that_fits_and_keeps_it(
    lenet: LoadedCheckpoint,
) -> None:
    predictor, staging, held_to = _on_fake_gpu(lenet, fits=16)
    reference = Predictor(lenet, torch.device("cpu"), torch.float32, 64)
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)

    other = predictor.launch(x[:8])  # the batch the wait thread still waits for: slot 0
    assert not isinstance(other, Tensor)
    rows = predictor.launch(x)  # 64 and 32 fail; four pieces of 16, in slot 1 only
    assert isinstance(rows, Tensor) and torch.allclose(rows, reference(x), atol=1e-6)
    assert staging.launched[1:] == [(1, 16)] * 4
    assert predictor.fits == 16 and held_to == [32, 16]  # the batcher is held to 16 too
    assert torch.allclose(other.wait(), reference(x[:8]), atol=1e-6)

    staging.launched.clear()
    assert torch.allclose(predictor(x), reference(x), atol=1e-6)
    assert [n for _, n in staging.launched] == [16] * 4  # remembered: 64 is not tried again
    assert len(staging.held) == 2


def test_out_of_memory_on_one_image_fails_the_batch(lenet: LoadedCheckpoint) -> None:
    predictor = Predictor(lenet, torch.device("cpu"), torch.float32, 8)
    predictor._cuda = FakeStaging(fits=0)  # type: ignore[assignment]
    with pytest.raises(torch.OutOfMemoryError):
        predictor.launch(torch.zeros((4, 1, 28, 28), dtype=torch.uint8))
    assert predictor.fits == 1


# What cuBLAS and cuDNN raise when they cannot allocate (a RuntimeError, not OutOfMemoryError).
CUBLAS = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
CUDNN = "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"


@pytest.mark.parametrize("message", [CUBLAS, CUDNN, "CUDA error: out of memory"])
def test_a_library_allocation_failure_shrinks_the_batch_as_out_of_memory_does(
    lenet: LoadedCheckpoint, message: str
) -> None:
    predictor = Predictor(lenet, torch.device("cpu"), torch.float32, 64)
    reference = Predictor(lenet, torch.device("cpu"), torch.float32, 64)
    predictor._cuda = FakeStaging(fits=16, error=message)  # type: ignore[assignment]
    held_to: list[int] = []
    predictor.on_resize = held_to.append
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(predictor(x), reference(x), atol=1e-6)
    assert predictor.fits == 16 and held_to == [32, 16]
    assert allocation_failure(RuntimeError(message))


def test_an_error_that_is_no_allocation_failure_fails_the_batch_unsplit(
    lenet: LoadedCheckpoint,
) -> None:
    predictor = Predictor(lenet, torch.device("cpu"), torch.float32, 64)
    other = "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm`"
    predictor._cuda = FakeStaging(fits=16, error=other)  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="EXECUTION_FAILED"):
        predictor(torch.zeros((64, 1, 28, 28), dtype=torch.uint8))
    assert predictor.fits == 64
    assert not allocation_failure(RuntimeError(other))
    assert not allocation_failure(ValueError("out of memory"))


def test_fits_grows_back_after_full_batches_and_shrinks_again_if_still_short(
    lenet: LoadedCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    grow_after = 4  # GROW_AFTER, small: the logic is tested, not the count
    monkeypatch.setattr(app.engine.predictor, "GROW_AFTER", grow_after)
    predictor, staging, sizes = _on_fake_gpu(lenet, fits=16)
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    predictor(x)
    assert predictor.fits == 16 and sizes == [32, 16]
    staging.fits = 32  # memory came back, partly (another model's batch is over)
    for _ in range(grow_after - 1):
        predictor(x[:16])
        predictor(x[:3])  # not full: proves nothing about 16
    assert predictor.fits == 16
    predictor(x[:16])
    assert predictor.fits == 32 and sizes[-1] == 32  # the batcher hears it too
    for _ in range(grow_after):
        predictor(x[:32])
    assert predictor.fits == 64  # tried again
    predictor(x)
    assert sizes[-2:] == [64, 32] and predictor.fits == 32  # 64 failed: held to 32 again
    staging.fits = 64
    for _ in range(grow_after):
        predictor(x[:32])
    assert predictor.fits == 64 and sizes[-1] == 64
    for _ in range(grow_after):
        predictor(x)
    assert predictor.fits == 64 and sizes[-1] == 64  # never beyond MAX_BATCH_SIZE


class _Done:
    """An event that has already happened (the GPU finished)."""

    def synchronize(self) -> None:
        pass


def test_the_ring_collects_a_batch_before_its_slot_is_reused() -> None:
    ring = _Ring(RING)
    buffers = [torch.zeros(4) for _ in range(RING)]  # the pinned output buffers
    pendings = []
    for i in range(RING + 2):  # more batches in flight than the ring has slots
        k = ring.take()
        buffers[k].fill_(i)  # the GPU writes batch i's rows into slot k
        pending = _CudaPending(torch.device("cpu"), _Done(), buffers[k])  # type: ignore[arg-type]
        ring.hold(k, pending)
        pendings.append(pending)
    for i, pending in enumerate(pendings):  # each still gets its own rows, not a later batch's
        assert torch.equal(pending.wait(), torch.full((4,), float(i))), i
    assert pendings[0].wait() is pendings[0].wait()  # collected once


def test_cuda_batches_are_padded_to_a_few_sizes() -> None:
    assert bucket_sizes(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert bucket_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert bucket_sizes(1) == [1]


def _fails(exc: Exception) -> object:
    def probe() -> None:
        raise exc

    return probe


def test_only_an_error_that_leaves_cuda_unusable_loses_the_device() -> None:
    cuda, cpu = torch.device("cuda", 1), torch.device("cpu")
    illegal = RuntimeError("CUDA error: an illegal memory access was encountered")
    sticky = _fails(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert device_lost(illegal, cuda, probe=sticky)
    assert not device_lost(illegal, cuda, probe=lambda: None)  # the device still runs
    oom = torch.OutOfMemoryError("CUDA out of memory")
    assert not device_lost(oom, cuda, probe=sticky)  # out of memory is never fatal
    assert not device_lost(ValueError("bad shape"), cuda, probe=sticky)
    assert not device_lost(illegal, cpu, probe=sticky)  # on the CPU a batch fails alone


def test_a_failing_cpu_model_fails_its_batch_only(lenet: LoadedCheckpoint) -> None:
    predictor = Predictor(lenet, torch.device("cpu"), torch.float32, 8)

    def broken(x: Tensor) -> Tensor:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    predictor.probabilities = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="illegal memory access"):
        predictor(torch.zeros((2, 1, 28, 28), dtype=torch.uint8))


class _FullSizeTensors(TorchDispatchMode):
    """Records the ops that write a whole N x 3 x 224 x 224 tensor (not a view of one)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.ops = numel, []  # type: ignore[var-annotated]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if isinstance(out, Tensor) and out.numel() == self.numel and 0 not in out.stride():
            self.ops.append(str(func))
        return out


def test_the_224_input_is_written_once_in_the_serving_dtype() -> None:
    ckpt = random_checkpoint("alexnet")
    predictor = Predictor(ckpt, torch.device("cpu"), torch.bfloat16, 2)
    seen: list[Tensor] = []

    class Stop(Exception):
        pass

    def first_layer(module: object, args: tuple[Tensor]) -> None:
        seen.append(args[0])
        raise Stop

    predictor.model.register_forward_pre_hook(first_layer)  # type: ignore[arg-type]
    with _FullSizeTensors(2 * 3 * 224 * 224) as copies, pytest.raises(Stop):
        predictor.probabilities(torch.zeros((2, 1, 28, 28), dtype=torch.uint8))
    (x,) = seen
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    assert len(copies.ops) == 1, copies.ops  # laid out once, already in bfloat16


@pytest.mark.parametrize(
    ("capability", "serve", "train"),
    [
        ((7, 0), torch.float16, None),  # V100
        ((7, 5), torch.float16, None),  # T4
        ((8, 0), torch.bfloat16, torch.bfloat16),  # A100
        ((8, 9), torch.bfloat16, torch.bfloat16),  # L4
        ((9, 0), torch.bfloat16, torch.bfloat16),  # H100, H200
    ],
)
def test_the_dtype_follows_the_compute_capability(
    monkeypatch: pytest.MonkeyPatch,
    capability: tuple[int, int],
    serve: torch.dtype,
    train: torch.dtype | None,
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    gpu = torch.device("cuda")
    assert runtime.inference_dtype(gpu, "auto") == serve
    assert runtime.training_amp(gpu, "auto") == train
    assert runtime.inference_dtype(gpu, "bfloat16") == torch.bfloat16  # asked for: as asked
    assert runtime.training_amp(gpu, "bf16") == torch.bfloat16
    assert runtime.training_amp(gpu, "off") is None
    assert runtime.inference_dtype(torch.device("cpu"), "auto") == torch.float32


def test_every_thread_binds_to_one_explicit_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 0)  # the index made explicit
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="cuda:2 asked for, but there are 2 CUDA device"):
        runtime.resolve_device("cuda:2")
    runtime.bind_thread(torch.device("cuda", 1))
    runtime.bind_thread(torch.device("cuda"))  # no index: the thread's current device, as is
    runtime.bind_thread(torch.device("cpu"))
    assert bound == [torch.device("cuda", 1)]
