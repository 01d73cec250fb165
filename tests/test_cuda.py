"""The CUDA path of the model call: pinned staging, copy stream, two batches in flight.

Runs where a GPU is; skipped elsewhere (the CPU path is tested everywhere else).
"""

import asyncio

import pytest
import torch

from app.engine.batching import DynamicBatcher
from app.engine.predictor import Predictor
from models.checkpoint import load_checkpoint
from tests.helpers import WEIGHTS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _predictors() -> tuple[Predictor, Predictor]:
    ckpt = load_checkpoint(WEIGHTS / "mnist_cnn.safetensors")
    cuda = Predictor(ckpt, torch.device("cuda"), torch.float32, 64)
    cpu = Predictor(
        load_checkpoint(WEIGHTS / "mnist_cnn.safetensors"), torch.device("cpu"), torch.float32, 64
    )
    return cuda, cpu


def test_cuda_batches_are_launched_and_match_the_cpu() -> None:
    cuda, cpu = _predictors()
    assert cuda.depth == 2 and cpu.depth == 1
    digits = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    pending = cuda.launch(digits)
    assert not isinstance(pending, torch.Tensor)  # launched, not waited for
    rows = pending.wait()
    assert rows.device.type == "cpu" and rows.shape == (64, 10)
    assert torch.allclose(rows, cpu(digits), atol=1e-4)


def test_staging_buffers_are_not_overwritten_while_in_flight() -> None:
    cuda, cpu = _predictors()
    batches = [torch.randint(0, 256, (48, 1, 28, 28), dtype=torch.uint8) for _ in range(5)]
    pendings = [cuda.launch(b) for b in batches[:2]]  # two in flight, as the batcher allows
    outs = [pendings[0].wait()]
    pendings.append(cuda.launch(batches[2]))
    outs += [p.wait() for p in pendings[1:]]
    for b, out in zip(batches[:3], outs, strict=True):
        assert torch.allclose(out, cpu(b), atol=1e-4)


async def test_the_batcher_keeps_order_with_two_cuda_batches_in_flight() -> None:
    cuda, cpu = _predictors()
    batcher = DynamicBatcher(
        cuda.launch,
        name="t",
        max_batch_size=16,
        max_delay_s=0.001,
        max_queue=4096,
        depth=cuda.depth,
    )
    batcher.start()
    digits = torch.randint(0, 256, (400, 1, 28, 28), dtype=torch.uint8)
    outs = await asyncio.gather(*(batcher.enqueue(digits[i : i + 10]) for i in range(0, 400, 10)))
    assert torch.allclose(torch.cat(outs), cpu(digits), atol=1e-4)
    await batcher.stop()
