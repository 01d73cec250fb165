"""GPU mode of the serving benchmark (``python -m benchmarks.serve_bench --gpu``).

Per model of ``--gpu-models`` (randomly initialised checkpoints: throughput does not depend on
the weights), in one run:

- the bare model: channels_last and the serving dtype on the device, batches already there, at
  batch sizes 64 to 1024 (swept once, then measured again at its best size in every round);
  its best images/s is the baseline;
- the service through HTTP, wrk sending 64-image requests, once per layout of
  ``--gpu-layouts`` (both by default): ``shared`` (one
  model owner batching for every frontend worker) and ``worker`` (a model copy in each of
  ``--gpu-worker-copies`` workers); images/s, p50/p99, the GPU memory the whole service holds
  (the device's memory in use, read through this process's own context before the service
  starts and while it runs) and how many processes hold a CUDA context there;

rounds alternate bare and service measurements so drift hits both alike. Without MNIST on the
host the requests carry synthetic stroke digits (labels are not checked; speed is the same).
wrk (or ``WRK=/path/to/wrk``) and the service's packages must be there: what is missing is said
before anything starts.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.gpu_readings import context_pids, memory_used_mib
from benchmarks.harness import free_port, service_command, start_server
from benchmarks.needs import missing
from benchmarks.wrk import digit_pngs, find_wrk, run_wrk, write_payloads
from models.checkpoint import CheckpointMeta, save_checkpoint
from models.framing import DIGIT_LABELS
from models.registry import get_input_spec, get_model
from models.runtime import bind_thread, inference_dtype
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
    for _ in range(3 if cuda else 1):  # warm-up: cuDNN algorithm choice, allocator, lazy init
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


def bare_throughput(
    name: str, device: torch.device, dtype: torch.dtype, seconds: float, batches: tuple[int, ...]
) -> dict[str, Any]:
    """Images/s of the bare model at each batch size of ``batches``, and the best of them."""
    model = get_model(name).to(device=device, dtype=dtype).eval()
    model = model.to(memory_format=torch.channels_last)
    rates: dict[int, float] = {}
    for batch in batches:
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
    if not rates:  # out of memory at the first size: what the service holds left no room
        return {"by_batch": {}, "best_batch": None, "best_images_s": None}
    best = max(rates, key=rates.__getitem__)
    return {"by_batch": rates, "best_batch": best, "best_images_s": rates[best]}


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


def preflight() -> None:
    """Say what is missing (wrk, the service's packages) before anything is measured."""
    absent = missing()
    if absent:
        raise RuntimeError(
            f"the service needs Python packages that are not importable: {', '.join(absent)} "
            "(scripts/gpu_check.sh installs them from the bundle scripts/gpu_bundle.sh makes)"
        )
    find_wrk()


def _server_env(
    args: argparse.Namespace, name: str, device: torch.device, layout: str, weights: Path
) -> dict[str, str]:
    env = {
        "WEIGHTS_DIR": str(weights),
        "MODELS": name,
        "DEVICE": str(device),
        "DTYPE": args.dtype,
        "ENGINE": layout,
        "MAX_BATCH_SIZE": str(args.batch_size),
        "MAX_QUEUE": str(max(4096, 64 * args.gpu_connections * 2)),
    }
    if layout == "worker":  # each worker holds the model, its activations and a CUDA context
        env["WORKERS"] = str(args.gpu_worker_copies)
    return {**env, **dict(kv.split("=", 1) for kv in args.server_env)}


def _layout_rows(
    args: argparse.Namespace,
    name: str,
    layout: str,
    device: torch.device,
    tmp: Path,
    sweep: dict[str, Any],
) -> list[dict[str, Any]]:
    """One layout of the service against the bare model at its best batch, round by round
    (the sweep's figure where the service left the bare model no room)."""
    best = sweep["best_batch"]
    dtype = inference_dtype(device, args.dtype)
    idle_mib, idle_contexts = memory_used_mib(device), context_pids(device)
    port = free_port()
    env = _server_env(args, name, device, layout, tmp / "weights")
    log = tmp / f"{name}-{layout}.log"
    server = start_server(
        f"{name}-{layout}", service_command(port), env, "/health/ready", port=port, log=log
    )
    rows: list[dict[str, Any]] = []
    try:
        url = f"{server.url}/predict/{name}"
        payloads = tmp / "x64"
        run_wrk(url, payloads, args.gpu_connections, args.warmup)
        for rnd in range(args.rounds):  # alternate, so drift hits both alike
            bare = bare_throughput(name, device, dtype, args.duration / 2, (best,))
            if bare["best_images_s"] is None:
                bare = {**sweep, "from_sweep": True}
            r = run_wrk(url, payloads, args.gpu_connections, args.duration)
            mib, contexts = memory_used_mib(device), context_pids(device)
            rows.append(
                {
                    "layout": layout,
                    "round": rnd,
                    "bare": bare,
                    **r,
                    "images_s": r["req_s"] * 64,
                    "gpu_mib": None if mib is None or idle_mib is None else mib - idle_mib,
                    "contexts": None
                    if contexts is None or idle_contexts is None
                    else len(set(contexts) - set(idle_contexts)),
                }
            )
            print(
                f"  {name} {layout:<6} round {rnd + 1}: bare {bare['best_images_s']:.0f} img/s "
                f"(batch {best}), service {rows[-1]['images_s']:.0f} img/s, "
                f"p50 {r['p50_ms']:.1f} ms",
                flush=True,
            )
    finally:
        server.stop()
    return rows


def gpu_main(
    args: argparse.Namespace, on_result: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Per model: bare model best batched images/s against the service in each layout.
    ``on_result`` hears the result so far after each model (written at once: a run cut short
    by a timeout keeps what it measured)."""
    preflight()
    layouts = args.gpu_layouts.split(",")
    if unknown := set(layouts) - set(LAYOUTS):
        raise ValueError(f"unknown layouts {sorted(unknown)}: {', '.join(LAYOUTS)}")
    cuda = torch.cuda.is_available() and args.gpu_device.startswith("cuda")
    device = torch.device(args.gpu_device if cuda else "cpu")
    bind_thread(device)
    dtype = inference_dtype(device, args.dtype)
    if not cuda:
        print("GPU mode off CUDA is a smoke test of the code path; its numbers mean nothing")
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        write_payloads(synthetic_pngs(4096), 64, tmp / "x64")
        for name in args.gpu_models.split(","):
            dummy_checkpoint(name, tmp / "weights")
            batches = BARE_BATCHES if cuda else BARE_BATCHES[:1]
            sweep = bare_throughput(name, device, dtype, args.duration / 4, batches)
            print(f"  {name} bare sweep: {sweep['by_batch']}", flush=True)
            rows = [
                row
                for layout in layouts
                for row in _layout_rows(args, name, layout, device, tmp, sweep)
            ]
            results.append({**_summary(name, rows, layouts), "bare_sweep": sweep})
            if on_result is not None:
                on_result({"gpu": results, "device": str(device), "dtype": str(dtype)})
    _print(results, device, dtype, args)
    return {"gpu": results, "device": str(device), "dtype": str(dtype)}


def _summary(name: str, rows: list[dict[str, Any]], measured: list[str]) -> dict[str, Any]:
    bare = statistics.median(r["bare"]["best_images_s"] for r in rows)
    layouts = {}
    for layout in measured:
        mine = [r for r in rows if r["layout"] == layout]
        images = statistics.median(r["images_s"] for r in mine)
        mibs = [r["gpu_mib"] for r in mine if r["gpu_mib"] is not None]
        contexts = [r["contexts"] for r in mine if r["contexts"] is not None]
        layouts[layout] = {
            "images_s": images,
            "percent_of_bare": 100 * images / bare,
            "p50_ms": statistics.median(r["p50_ms"] for r in mine),
            "p99_ms": statistics.median(r["p99_ms"] for r in mine),
            "gpu_mib": max(mibs) if mibs else None,
            "contexts": max(contexts) if contexts else None,
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
        "pass": None
        if target is None or "shared" not in layouts
        else layouts["shared"]["percent_of_bare"] >= 100 * target,
        "rows": rows,
    }


def _print(
    results: list[dict[str, Any]], device: torch.device, dtype: torch.dtype, args: Any
) -> None:
    print(
        f"\nGPU mode on {device} ({dtype}), {args.gpu_connections} connections x 64 images, "
        f"MAX_BATCH_SIZE {args.batch_size}, median of {args.rounds} rounds of {args.duration} s; "
        f"worker layout: {args.gpu_worker_copies} model copies"
    )
    print(
        f"{'model':<8} {'layout':<7} {'bare best':>10} {'service':>9} {'% bare':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'GPU MiB':>8} {'ctx':>4} {'errors':>6}"
    )
    for r in results:
        for layout, s in r["layouts"].items():
            mib = "-" if s["gpu_mib"] is None else f"{s['gpu_mib']:.0f}"
            ctx = "-" if s["contexts"] is None else str(s["contexts"])
            print(
                f"{r['model']:<8} {layout:<7} {r['bare_best_images_s']:>10.0f} "
                f"{s['images_s']:>9.0f} {s['percent_of_bare']:>6.1f}% {s['p50_ms']:>7.1f} "
                f"{s['p99_ms']:>7.1f} {mib:>8} {ctx:>4} {s['errors']:>6}"
            )
        if r["target_fraction"] is not None:
            verdict = "PASS" if r["pass"] else "FAIL"
            print(f"  {r['model']}: shared layout >= {r['target_fraction']:.0%} of bare: {verdict}")
