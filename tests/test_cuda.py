"""The CUDA path: pinned staging ring, copy stream, two batches in flight, padded batch sizes,
the serving dtypes against float32, the 224x224 path, out of memory, a lost device, the model
owner end to end and ``cuda:N``.

Runs where a GPU is; skipped elsewhere (test_predictor.py, test_host.py and test_batching.py run
the same logic on the CPU). On a CUDA machine none of them may skip: the GPU check
(benchmarks/gpu_check.py) counts a skip as a failure, since a skipped test checked nothing.
float32 is compared without TF32 (cuDNN's default rounds convolution inputs to TF32, ~1e-3
relative: it would fail on precision, not logic); bfloat16 and float16 with their own
tolerances. What poisons a CUDA context runs in a process of its own.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from app.digits.preprocess import preprocess
from app.engine.batching import DynamicBatcher
from app.engine.predictor import Predictor
from benchmarks.gpu_readings import context_pids
from benchmarks.harness import free_port, start_server
from models.checkpoint import LoadedCheckpoint, load_checkpoint
from models.data import MnistSplit
from models.runtime import exact_float32, inference_dtype
from tests.helpers import ROOT, WEIGHTS, png, random_checkpoint
from tests.server import start_service

# The repository first, what was there after it: the GPU machine's packages installed with
# pip --target are found through PYTHONPATH, which replacing it would lose.
PYTHONPATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA, CPU = torch.device("cuda"), torch.device("cpu")
FP32_ATOL = 1e-4  # probabilities, CUDA float32 without TF32 against the CPU


@pytest.fixture(autouse=True)
def no_tf32() -> Iterator[None]:
    with exact_float32():
        yield


def _mnist_cnn() -> LoadedCheckpoint:
    return load_checkpoint(WEIGHTS / "mnist_cnn.safetensors")


def _digits(mnist_test: MnistSplit, n: int, start: int = 0) -> torch.Tensor:
    return mnist_test.images[start : start + n].clone()


def test_a_batch_is_launched_and_matches_the_cpu(mnist_test: MnistSplit) -> None:
    cuda = Predictor(_mnist_cnn(), CUDA, torch.float32, 64)
    cpu = Predictor(_mnist_cnn(), CPU, torch.float32, 64)
    assert cuda.depth == 2 and cpu.depth == 1
    digits = _digits(mnist_test, 64)
    pending = cuda.launch(digits)
    assert not isinstance(pending, torch.Tensor)  # launched, not waited for
    rows = pending.wait()
    assert rows.device.type == "cpu" and rows.shape == (64, 10)
    assert torch.allclose(rows, cpu(digits), atol=FP32_ATOL)


def test_the_ring_is_reused_with_two_batches_in_flight(mnist_test: MnistSplit) -> None:
    cuda = Predictor(_mnist_cnn(), CUDA, torch.float32, 64)
    cpu = Predictor(_mnist_cnn(), CPU, torch.float32, 64)
    sizes = [48, 3, 64, 17, 1, 33, 64]  # padded to 64, 4, 64, 32, 1, 64, 64; seven batches
    batches, start = [], 0
    for n in sizes:
        batches.append(_digits(mnist_test, n, start))
        start += n
    pending = [cuda.launch(batches[0]), cuda.launch(batches[1])]
    outs = []
    for b in batches[2:]:  # as the batcher does: wait for the oldest, launch the next
        outs.append(pending.pop(0).wait())  # type: ignore[union-attr]
        pending.append(cuda.launch(b))
    outs += [p.wait() for p in pending]  # type: ignore[union-attr]
    for b, out in zip(batches, outs, strict=True):
        assert torch.allclose(out, cpu(b), atol=FP32_ATOL)
    # More batches in flight than the ring has slots: each reused slot's batch is collected
    # first, so every batch still gets its own rows.
    many = [cuda.launch(b) for b in batches[:5]]
    for b, p in zip(batches[:5], many, strict=True):
        assert torch.allclose(p.wait(), cpu(b), atol=FP32_ATOL)  # type: ignore[union-attr]


async def test_the_batcher_keeps_order_with_two_cuda_batches_in_flight(
    mnist_test: MnistSplit,
) -> None:
    cuda = Predictor(_mnist_cnn(), CUDA, torch.float32, 16)
    cpu = Predictor(_mnist_cnn(), CPU, torch.float32, 16)
    batcher = DynamicBatcher(
        cuda.launch, name="t", max_batch_size=16, max_delay_s=0.001, max_queue=4096, depth=2
    )
    batcher.start()
    digits = _digits(mnist_test, 400)
    outs = await asyncio.gather(*(batcher.enqueue(digits[i : i + 10]) for i in range(0, 400, 10)))
    await batcher.stop()
    assert torch.allclose(torch.cat(outs), cpu(digits), atol=FP32_ATOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_half_dtypes_agree_with_float32(dtype: torch.dtype, mnist_test: MnistSplit) -> None:
    if dtype == torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("bfloat16 is not native before compute capability 8.0")
    half = Predictor(_mnist_cnn(), CUDA, dtype, 256)
    full = Predictor(_mnist_cnn(), CUDA, torch.float32, 256)
    digits = _digits(mnist_test, 1000)
    a = torch.cat([half(digits[i : i + 250]) for i in range(0, 1000, 250)])
    b = torch.cat([full(digits[i : i + 250]) for i in range(0, 1000, 250)])
    diff = (a - b).abs()
    assert diff.mean() < 1e-3 and diff.max() < 0.1, (diff.mean(), diff.max())
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.995
    assert torch.allclose(a.sum(1), torch.ones(1000), atol=1e-3)


def test_the_224_path_against_float32() -> None:
    digits = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    cpu = Predictor(random_checkpoint("alexnet"), CPU, torch.float32, 8)(digits)
    fp32 = Predictor(random_checkpoint("alexnet"), CUDA, torch.float32, 8)(digits)
    assert torch.allclose(fp32, cpu, atol=FP32_ATOL)  # transform (resize, repeat) on the GPU
    half = Predictor(random_checkpoint("alexnet"), CUDA, inference_dtype(CUDA), 8)(digits)
    assert (half - fp32).abs().max() < 1e-2  # bfloat16 (float16 before compute capability 8)


def test_waiting_for_a_batch_sleeps_instead_of_spinning() -> None:
    predictor = Predictor(_mnist_cnn(), CUDA, inference_dtype(CUDA), 64)
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    predictor(x)  # kernels chosen, memory cached
    assert predictor._cuda is not None
    # A GPU busy for about 0.2 s (2e8 cycles at 1-2 GHz) before the batch: long enough to
    # tell sleeping from spinning on any GPU, so the test never has to skip.
    with torch.cuda.stream(predictor._cuda.compute_stream):
        torch.cuda._sleep(200_000_000)
    pending = predictor.launch(x)
    cpu, wall = time.thread_time(), time.perf_counter()
    pending.wait()  # type: ignore[union-attr]
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    assert wall > 0.02, wall  # the wait did wait for the busy GPU
    assert cpu < 0.5 * wall, (cpu, wall)  # a blocking event: the thread slept


def _reserved_peak(predictor: Predictor, digits: torch.Tensor) -> tuple[int, torch.Tensor]:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    rows = predictor(digits)
    return torch.cuda.max_memory_reserved(), rows


def test_out_of_memory_recovers_at_the_largest_size_that_fits() -> None:
    predictor = Predictor(random_checkpoint("vgg16"), CUDA, inference_dtype(CUDA), 64)
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    at8, _ = _reserved_peak(predictor, x[:8])
    at32, _ = _reserved_peak(predictor, x[:32])
    at64, reference = _reserved_peak(predictor, x)
    assert at64 > at32 > at8
    total = torch.cuda.get_device_properties(CUDA).total_memory
    held_to: list[int] = []
    predictor.on_resize = held_to.append
    # Under a cap between the peaks of 32 and 64, cuDNN may still fit 64 by falling back to
    # algorithms with a smaller workspace: lower the cap step by step (never below what a
    # batch of 8 took) until a batch of 64 does run out of memory.
    try:
        for cap in np.linspace((at32 + at64) / 2, at8 * 1.05, 8):
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(float(cap) / total)
            other = predictor.launch(x[:8])  # in flight while the next batch runs out of memory
            out = predictor.launch(x)  # run in pieces (a Tensor) when it ran out of memory
            rows = out if isinstance(out, torch.Tensor) else out.wait()
            assert (rows - reference).abs().max() < 1e-2
            other_rows = other if isinstance(other, torch.Tensor) else other.wait()
            assert (other_rows - reference[:8]).abs().max() < 1e-2
            if held_to:
                break
        else:
            pytest.fail(f"a batch of 64 never ran out of memory, down to a cap of {cap:.0f} B")
        fits = predictor.fits
        assert fits < 64 and fits & (fits - 1) == 0 and held_to[-1] == fits, held_to
        shrinks = len(held_to)
        again = predictor(x)  # held to what fits: no new failure
        assert len(held_to) == shrinks and (again - reference).abs().max() < 1e-2
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


CUDA_N = """
import asyncio, json, torch
from app.engine.host import ModelHost
from app.metrics import Metrics
from tests.helpers import settings

from models.runtime import resolve_device

count = torch.cuda.device_count()
n = count - 1  # the last GPU: on one GPU, GPU 0 named explicitly
conf = settings(models=("mnist_cnn",), device=f"cuda:{n}", max_batch_size=16)
try:
    resolve_device(f"cuda:{count}")
    refused = None
except RuntimeError as exc:
    refused = str(exc)

async def main():
    host = await ModelHost.start(conf, Metrics(), 1)
    try:
        rows = await asyncio.gather(*(host.enqueue("mnist_cnn", torch.zeros((10, 1, 28, 28),
                                      dtype=torch.uint8)) for _ in range(8)))
    finally:
        await host.stop()
    return torch.cat(rows)

rows = asyncio.run(main())
contexts = [bool(torch._C._cuda_hasPrimaryContext(i)) for i in range(torch.cuda.device_count())]
print(json.dumps({"n": n, "rows": list(rows.shape), "contexts": contexts, "refused": refused}))
"""


def test_cuda_n_makes_no_context_on_another_gpu() -> None:
    """On several GPUs: the last one serves, and no other gets a context. On one GPU (the lent
    machine) that half cannot be tested; what can is: GPU 0 named explicitly serves, holds the
    only context, and a GPU that is not there is refused by name at start-up."""
    done = subprocess.run(
        [sys.executable, "-c", CUDA_N],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == [80, 10]
    n = result["n"]
    assert result["contexts"] == [i == n for i in range(n + 1)], result  # GPU n only
    assert result["refused"] and f"cuda:{n + 1}" in result["refused"], result


@pytest.fixture(scope="module")
def pngs(mnist_test: MnistSplit) -> list[bytes]:
    return [png(mnist_test.images[i, 0].numpy()) for i in range(512)]


def test_the_model_owner_serves_cuda_through_http(pngs: list[bytes]) -> None:
    before = set(context_pids(CUDA) or [])
    server = start_service(
        DEVICE="cuda",
        ENGINE="shared",
        WORKERS="2",
        DTYPE="float32",
        MODELS="lenet,mnist_cnn",
        MAX_BATCH_SIZE="64",
    )
    try:
        contexts = context_pids(CUDA)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for name in ("lenet", "mnist_cnn"):
                card = client.get(f"/models/{name}").json()
                assert card["device"] == "cuda:0" and card["dtype"] == "float32"
                cpu = Predictor(
                    load_checkpoint(WEIGHTS / f"{name}.safetensors"), CPU, torch.float32, 64
                )
                got = []
                for start in range(0, len(pngs), 64):
                    files = [("files", (f"{i}.png", pngs[i])) for i in range(start, start + 64)]
                    r = client.post(f"/predict/{name}", files=files)
                    assert r.status_code == 200, r.text
                    got += [p["probabilities"] for p in r.json()["predictions"]]
                digits = torch.from_numpy(np.stack([preprocess(b) for b in pngs]))[:, None]
                assert np.allclose(got, cpu(digits).numpy(), atol=FP32_ATOL)
    finally:
        server.stop()
    if contexts:  # nvidia-smi lists processes (inside a container it may list none)
        assert len(set(contexts) - before) == 1, contexts  # the model owner's, and no other


def test_a_device_side_assert_stops_the_service_with_an_error(pngs: list[bytes]) -> None:
    port = free_port()
    command = [sys.executable, str(ROOT / "tests" / "device_lost_service.py"), "--port", str(port)]
    env = {
        "WEIGHTS_DIR": str(WEIGHTS),
        "DEVICE": "cuda",
        "MODELS": "lenet",
        "FAULT": "cuda",
        "ENGINE": "shared",
        "WORKERS": "2",
        "PYTHONPATH": PYTHONPATH,
    }
    server = start_server("service", command, env, "/health/ready", port=port)
    try:
        files = [("files", (f"{i}.png", pngs[i])) for i in range(3)]
        r = httpx.post(server.url + "/predict/lenet", files=files, timeout=60)
        assert r.status_code == 500 and r.json()["type"] == "/problems/inference-failed"
        assert server.proc.wait(120) == 1  # the owner exits 1, the launcher stops with 1
    finally:
        server.stop()
