"""GPU mode of the serving benchmark (``python -m benchmarks.serve_bench --gpu``).

Per model of ``--gpu-models`` (randomly initialised checkpoints: throughput does not depend on
the weights), in one run:

- the bare model: channels_last and DTYPE on the device, batches already there, at batch sizes
  64 to 1024; its best images/s is the baseline;
- the service through HTTP, wrk sending 64-image requests, once per layout: ``shared`` (one
  model owner batching for every frontend worker) and ``worker`` (a model copy per worker);
  images/s, p50/p99, and the GPU memory the whole service holds (nvidia-smi);

rounds alternate bare and service measurements so drift hits both alike. Without MNIST on the
host the requests carry synthetic stroke digits (labels are not checked; speed is the same).
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import free_port, service_command, start_server
from benchmarks.wrk import digit_pngs, ensure_wrk, run_wrk, write_payloads
from models.checkpoint import DIGIT_LABELS, CheckpointMeta, save_checkpoint
from models.registry import get_input_spec, get_model
from models.runtime import inference_dtype
from models.transforms import MNIST_MEAN, MNIST_STD
from models.weights import checkpoint_path

BARE_BATCHES = (64, 128, 256, 512, 1024)
TARGETS = {"alexnet": 0.80, "vgg16": 0.92}  # service / bare model's best, 64-image requests
LAYOUTS = ("shared", "worker")


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
        train_command="benchmark dummy: random weights written by benchmarks/serve_gpu.py",
        seed=0,
        dataset_fingerprint="none (benchmark dummy, never trained)",
    )
    return save_checkpoint(get_model(name), meta, checkpoint_path(name, weights_dir))


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
        if calls % 10 == 0 or not cuda:  # kernels run asynchronously: sync before the clock
            sync()
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return calls * batch / elapsed


def bare_throughput(name: str, device: torch.device, dtype: torch.dtype, seconds: float) -> dict:
    """Images/s of the bare model at each batch size of BARE_BATCHES, and the best of them."""
    model = get_model(name).to(device=device, dtype=dtype).eval()
    model = model.to(memory_format=torch.channels_last)
    rates: dict[int, float] = {}
    for batch in BARE_BATCHES if device.type == "cuda" else BARE_BATCHES[:1]:
        x = torch.randn(batch, *get_input_spec(name).as_tuple(), device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode():
                call = lambda x=x, m=model: m(x)  # noqa: E731
                rates[batch] = _rate(call, batch, seconds, device.type == "cuda")
        except torch.OutOfMemoryError:
            break
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()  # leave the memory to the service measured next
    best = max(rates, key=rates.__getitem__)
    return {"by_batch": rates, "best_batch": best, "best_images_s": rates[best]}


def gpu_memory_mib() -> float | None:
    """Memory in use on GPU 0, as nvidia-smi reports it (every process, ours included)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return float(out.stdout.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def synthetic_pngs(n: int) -> list[bytes]:
    """Stroke digits for hosts without MNIST: the same sizes and decoding work."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    digits = np.zeros((n, 28, 28), np.uint8)
    for d in digits:
        img = Image.fromarray(d)
        ImageDraw.Draw(img).line([tuple(rng.integers(6, 22, 2)) for _ in range(4)], 255, 3)
        d[:] = np.asarray(img)
    return digit_pngs(digits)


def gpu_main(args: argparse.Namespace) -> dict[str, Any]:
    """Per model: bare model best batched images/s against the service in each layout."""
    ensure_wrk()
    device = torch.device(args.gpu_device if torch.cuda.is_available() else "cpu")
    dtype = inference_dtype(device, args.dtype)
    if device.type != "cuda":
        print("GPU mode off CUDA is a smoke test of the code path; its numbers mean nothing")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        payloads = write_payloads(synthetic_pngs(4096), 64, Path(tmp) / "x64")
        for name in args.gpu_models.split(","):
            dummy_checkpoint(name, Path(tmp) / "weights")
            rows: list[dict[str, Any]] = []
            for layout in LAYOUTS:
                env = {
                    "WEIGHTS_DIR": str(Path(tmp) / "weights"),
                    "MODELS": name,
                    "DEVICE": str(device),
                    "DTYPE": args.dtype,
                    "ENGINE": layout,
                    "MAX_BATCH_SIZE": str(args.batch_size),
                    "MAX_QUEUE": str(max(4096, 64 * args.gpu_connections * 2)),
                    **dict(kv.split("=", 1) for kv in args.server_env),
                }
                idle_mib = gpu_memory_mib()
                port = free_port()
                server = start_server(
                    f"{name}-{layout}",
                    service_command(port),
                    env,
                    "/health/ready",
                    port=port,
                    log=Path(tmp) / f"{name}-{layout}.log",
                )
                try:
                    url = f"{server.url}/predict/{name}"
                    run_wrk(url, payloads, args.gpu_connections, args.warmup)
                    for rnd in range(args.rounds):  # alternate, so drift hits both alike
                        bare = bare_throughput(name, device, dtype, args.duration / 2)
                        r = run_wrk(url, payloads, args.gpu_connections, args.duration)
                        mib = gpu_memory_mib()
                        rows.append(
                            {
                                "layout": layout,
                                "round": rnd,
                                "bare": bare,
                                **r,
                                "images_s": r["req_s"] * 64,
                                "gpu_mib": None
                                if mib is None or idle_mib is None
                                else mib - idle_mib,
                            }
                        )
                        print(
                            f"  {name} {layout:<6} round {rnd + 1}: bare best "
                            f"{bare['best_images_s']:.0f} img/s (batch {bare['best_batch']}), "
                            f"service {rows[-1]['images_s']:.0f} img/s, p50 {r['p50_ms']:.1f} ms",
                            flush=True,
                        )
                finally:
                    server.stop()
            results.append(_summary(name, rows))
    _print(results, device, dtype, args)
    return {"gpu": results, "device": str(device), "dtype": str(dtype)}


def _summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    bare = statistics.median(r["bare"]["best_images_s"] for r in rows)
    layouts = {}
    for layout in LAYOUTS:
        mine = [r for r in rows if r["layout"] == layout]
        images = statistics.median(r["images_s"] for r in mine)
        mibs = [r["gpu_mib"] for r in mine if r["gpu_mib"] is not None]
        layouts[layout] = {
            "images_s": images,
            "percent_of_bare": 100 * images / bare,
            "p50_ms": statistics.median(r["p50_ms"] for r in mine),
            "p99_ms": statistics.median(r["p99_ms"] for r in mine),
            "gpu_mib": max(mibs) if mibs else None,
            "errors": sum(r["errors"] for r in mine),
        }
    best = max(layouts, key=lambda k: layouts[k]["images_s"])
    target = TARGETS.get(name)
    return {
        "model": name,
        "bare_best_images_s": bare,
        "layouts": layouts,
        "faster_layout": best,
        "target_fraction": target,
        "pass": None if target is None else layouts["shared"]["percent_of_bare"] >= 100 * target,
        "rows": rows,
    }


def _print(
    results: list[dict[str, Any]], device: torch.device, dtype: torch.dtype, args: Any
) -> None:
    print(
        f"\nGPU mode on {device} ({dtype}), {args.gpu_connections} connections x 64 images, "
        f"MAX_BATCH_SIZE {args.batch_size}, median of {args.rounds} rounds of {args.duration} s"
    )
    print(
        f"{'model':<8} {'layout':<7} {'bare best':>10} {'service':>9} {'% bare':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'GPU MiB':>8} {'errors':>6}"
    )
    for r in results:
        for layout, s in r["layouts"].items():
            mib = "-" if s["gpu_mib"] is None else f"{s['gpu_mib']:.0f}"
            print(
                f"{r['model']:<8} {layout:<7} {r['bare_best_images_s']:>10.0f} "
                f"{s['images_s']:>9.0f} {s['percent_of_bare']:>6.1f}% {s['p50_ms']:>7.1f} "
                f"{s['p99_ms']:>7.1f} {mib:>8} {s['errors']:>6}"
            )
        if r["target_fraction"] is not None:
            verdict = "PASS" if r["pass"] else "FAIL"
            print(f"  {r['model']}: shared layout >= {r['target_fraction']:.0%} of bare: {verdict}")
