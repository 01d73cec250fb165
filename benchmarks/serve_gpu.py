"""GPU mode of ``benchmarks/serve_bench.py`` (``--gpu``): the service against the bare model.

Per model of ``--gpu-models``, a randomly initialised checkpoint (throughput does not depend
on the weights) is served by our service alone; rounds alternate ``bare_throughput`` (the model
on batches already on the device, the GPU target's baseline) with a load of 64-image requests.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.serving import Predictor
from benchmarks.serve_harness import NOTE, Scenario, extra_env, run_load, start_server
from models.checkpoint import DIGIT_LABELS, CheckpointMeta, load_checkpoint, save_checkpoint
from models.registry import get_input_spec, get_model
from models.transforms import MNIST_MEAN, MNIST_STD


def dummy_checkpoint(name: str, weights_dir: Path) -> Path:
    """A randomly initialised checkpoint of ``name``: throughput does not depend on the weights."""
    torch.manual_seed(0)
    meta = CheckpointMeta(
        architecture=name,
        arch_kwargs={},
        input_spec=get_input_spec(name),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        labels=DIGIT_LABELS,
        test_accuracy=0.0,
        test_loss=0.0,
        train_command="benchmark dummy: random weights written by benchmarks/serve_bench.py --gpu",
        seed=0,
        dataset_fingerprint="none (benchmark dummy, never trained)",
    )
    return save_checkpoint(get_model(name), meta, weights_dir / f"{name}.safetensors")


def _rate(fn: Callable[[], object], batch: int, seconds: float, cuda: bool) -> float:
    """Images/s of ``fn()`` on ``batch`` images, run back to back for about ``seconds``."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(5):  # warm-up: cuDNN algorithm choice, allocator, lazy init
        fn()
    sync()
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if calls % 10 == 0 or not cuda:  # on CUDA, check the clock without a sync per call
            sync()  # kernels run asynchronously: only a synchronised clock counts them
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return calls * batch / elapsed


def bare_throughput(
    path: Path, device: torch.device, dtype: torch.dtype, batch: int, seconds: float
) -> dict[str, float]:
    """Images/s of the bare model on a device batch, and of the service's whole model call."""
    rates = _rates(path, device, dtype, batch, seconds)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the models are gone: leave their memory to the service
    return rates


def _rates(
    path: Path, device: torch.device, dtype: torch.dtype, batch: int, seconds: float
) -> dict[str, float]:
    ckpt = load_checkpoint(path)
    model = ckpt.model.to(device=device, dtype=dtype).eval()
    cuda = device.type == "cuda"
    if cuda:  # as the service places it
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, *ckpt.meta.input_spec.as_tuple(), device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last) if cuda else x
    with torch.inference_mode():
        bare = _rate(lambda: model(x), batch, seconds, cuda)
    # The batcher's call: 28x28 digits from host memory, resized on the device, probs back.
    predictor = Predictor(load_checkpoint(path), device, dtype)
    digits = torch.rand(batch, 1, 28, 28)
    return {
        "bare_images_s": bare,
        "call_images_s": _rate(lambda: predictor(digits), batch, seconds, cuda),
    }


def gpu_main(args: argparse.Namespace, tmp: Path, payloads: Path) -> dict[str, Any]:
    """Per model: images/s through the service (64-image requests) against the bare model."""
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    if device.type != "cuda":
        print("GPU mode off CUDA is a smoke test of the code path; its numbers mean nothing")
    sc = Scenario("batch64", args.gpu_concurrency, 64)
    results = []
    for name in args.gpu_models.split(","):
        path = dummy_checkpoint(name, tmp / "weights")
        env = {
            "WEIGHTS_DIR": str(path.parent),
            "MODELS": name,
            "DEVICE": args.device,
            "DTYPE": args.dtype,
            "MAX_BATCH_SIZE": str(args.batch_size),
            "MAX_QUEUE": str(max(2048, 64 * args.gpu_concurrency)),
            **extra_env(args),
        }
        rows = []
        server = start_server(name, ["app.main:app"], env, "/health/ready", tmp)
        try:
            for rnd in range(args.rounds):  # alternate, so drift hits both alike
                rows.append(
                    {
                        "round": rnd,
                        **bare_throughput(path, device, dtype, args.batch_size, args.duration),
                        **run_load(server, f"/predict/{name}", payloads, sc, args),
                    }
                )
                print(
                    f"  round {rnd + 1} {name}: bare {rows[-1]['bare_images_s']:.0f} img/s, "
                    f"service {rows[-1]['images_s']:.0f} img/s",
                    flush=True,
                )
        finally:
            server.stop()
            path.unlink()  # VGG16 is half a gigabyte
        med = {
            k: statistics.median(r[k] for r in rows)
            for k in ("bare_images_s", "call_images_s", "images_s", "req_s", "p50_ms", "p99_ms")
        }
        results.append(
            {
                "model": name,
                **med,
                "errors": sum(r["errors"] for r in rows),
                "percent_of_bare": 100 * med["images_s"] / med["bare_images_s"],
                "rows": rows,
            }
        )
    print(
        f"\nGPU mode on {device} ({dtype}, batch {args.batch_size}, {sc.concurrency} clients x "
        f"64 images), median of {args.rounds} rounds of {args.duration} s"
    )
    print(
        f"{'model':<8} {'bare img/s':>11} {'model call':>11} {'service':>10} {'% of bare':>9} "
        f"{'p50 ms':>8} {'errors':>6}  target >= 70%"
    )
    for r in results:
        ok = r["percent_of_bare"] >= 70 and r["errors"] == 0
        print(
            f"{r['model']:<8} {r['bare_images_s']:>11.0f} {r['call_images_s']:>11.0f} "
            f"{r['images_s']:>10.0f} {r['percent_of_bare']:>8.1f}% {r['p50_ms']:>8.1f} "
            f"{r['errors']:>6}  {'PASS' if ok else 'FAIL'}"
        )
    print(
        "model call = the service's Predictor alone (digits in host memory -> resize on the "
        "device -> probabilities back), no HTTP.\n" + NOTE
    )
    return {"gpu": results}
