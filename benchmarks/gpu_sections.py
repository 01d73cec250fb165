"""The GPU check's sections (benchmarks/gpu_check.py runs each in a process of its own): every
function takes the run's settings and returns what it measured as JSON-ready data.

``dry`` runs the same code on the CPU with tiny sizes, so that the suite keeps it working;
``mode`` sizes the work: ``quick`` (the whole check in under 5 minutes) or ``full``.
"""

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import ROOT, free_port, service_command, start_server

COMMITTED = ("lenet", "mnist_cnn")  # the committed checkpoints: their accuracy is known
NET_224 = "alexnet"  # the 224x224 net the check trains for a few hundred steps, then serves
DEFAULT_CUDA_TESTS = "tests/test_cuda.py"


@dataclass(frozen=True)
class Run:
    """What every section is told."""

    device: str
    data_dir: Path
    dry: bool
    work: Path  # a scratch folder of this run
    mode: str = "quick"  # or "full"
    cuda_tests: str = DEFAULT_CUDA_TESTS  # the rehearsal points it at fake tests


def pythonpath(*first: str | Path) -> str:
    """``first``, then the PYTHONPATH this process was given: packages installed with pip
    --target are found through it, so a child's PYTHONPATH must keep it, never replace it."""
    parts = [str(p) for p in first] + [os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def environment(run: Run) -> dict[str, Any]:
    """Python, torch, the GPU and the dtype serving picks on it."""
    import torch

    from models.runtime import inference_dtype

    device = torch.device(run.device)
    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": run.device,
        "serving_dtype": str(inference_dtype(device, "auto")).removeprefix("torch."),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out |= {
            "gpu": props.name,
            "capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        }
    return out


def cuda_tests(run: Run) -> dict[str, Any]:
    """tests/test_cuda.py under pytest: counts, and each failed, errored or skipped test with
    its message (gpu_check's verdict counts a skip on CUDA as a failure)."""
    report = run.work / "junit.xml"
    # Only the plugins these tests use: whatever else the machine has installed stays out.
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "no:cacheprovider"]
    command = [sys.executable, "-m", "pytest", "-q", "-rA", *plugins, run.cuda_tests]
    env = {**os.environ, "MNIST_DATA_DIR": str(run.data_dir), "PYTHONPATH": pythonpath(ROOT)}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(
        [*command, f"--junitxml={report}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if not report.exists():  # pytest did not get as far as running anything
        said = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"pytest exited {done.returncode} without a report: {said}")
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    outcomes = [
        {
            "test": case.get("name"),
            "outcome": problem.tag,
            "message": (problem.get("message") or "")[:500],
        }
        for case in suite.iter("testcase")
        for problem in case
        if problem.tag in ("failure", "error", "skipped")
    ]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {
        "exit_code": done.returncode,
        **counts,
        "failed": [o for o in outcomes if o["outcome"] != "skipped"],
        "skipped_tests": [o for o in outcomes if o["outcome"] == "skipped"],
        "summary": done.stdout.strip().splitlines()[-1:],
    }


def _post_all(url: str, model: str, pngs: list[bytes], per_request: int = 250) -> list[int]:
    """Every image through ``/predict/model``, eight requests at a time; labels in order."""
    import httpx

    async def run() -> list[int]:
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:

            async def one(start: int) -> list[int]:
                files = [
                    ("files", (f"{i}.png", pngs[i], "image/png"))
                    for i in range(start, min(start + per_request, len(pngs)))
                ]
                async with limit:
                    r = await client.post(f"/predict/{model}", files=files)
                r.raise_for_status()
                return [int(p["label"]) for p in r.json()["predictions"]]

            parts = await asyncio.gather(*(one(s) for s in range(0, len(pngs), per_request)))
        return [label for part in parts for label in part]

    return asyncio.run(run())


def _evaluation_cli(run: Run, model: str, limit: int, weights: Path) -> dict[str, Any]:
    """What ``python -m models.evaluate`` prints for ``model`` on the first ``limit`` digits."""
    from models import evaluate

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = evaluate.main(
            [
                "--model",
                model,
                "--weights",
                str(weights),
                "--data-dir",
                str(run.data_dir),
                "--no-download",
                "--device",
                run.device,
                "--limit",
                str(limit),
            ]
        )
    if code:
        raise RuntimeError(f"the evaluation CLI exited with {code}")
    return json.loads(printed.getvalue().strip().splitlines()[-1])  # type: ignore[no-any-return]


def _train_224(run: Run, weights: Path) -> dict[str, Any]:
    """NET_224 trained for a few hundred steps (a handful on the CPU) with the training CLI,
    into ``weights``: a 224x224 net whose answers mean something, served next."""
    import torch

    from models import train
    from models.runtime import release_cached_memory

    steps, batch = (2, 32) if run.dry else (300, 128)
    out = weights / f"{NET_224}.safetensors"
    args = ["--model", NET_224, "--data-dir", str(run.data_dir), "--no-download"]
    args += ["--device", run.device, "--epochs", "1", "--batch-size", str(batch)]
    args += ["--limit-train", str(steps * batch), "--limit-test", "64" if run.dry else "2000"]
    started = time.perf_counter()
    code = train.main([*args, "--out", str(out)])
    if code:
        raise RuntimeError(f"training {NET_224} exited with {code}")
    history = json.loads(out.with_suffix(".log.json").read_text())["history"]
    release_cached_memory(torch.device(run.device))  # the service measured next needs the room
    return {
        "steps": steps,
        "batch_size": batch,
        "wall_s": time.perf_counter() - started,
        "test_accuracy": history[-1]["test_accuracy"],
    }


def accuracy_mismatch(images: int, http_correct: int, cli_correct: int) -> bool:
    """Whether the accuracy through HTTP and the evaluation CLI's differ by more than a batch's
    rounding can explain: batches made of other digits may round a near tie the other way
    (at most 1 digit in 2000, and never more than 1 of a few hundred)."""
    return abs(http_correct - cli_correct) > max(1, images // 2000)


def service_http(run: Run) -> dict[str, Any]:
    """The service on the device (shared layout, float32) through HTTP: MNIST test digits for
    mnist_cnn (lenet too in full mode) and a freshly trained 224x224 net, against the
    evaluation CLI; start-up time, the processes holding a CUDA context, the memory held."""
    import torch

    from benchmarks.gpu_readings import context_pids, memory_used_mib
    from benchmarks.wrk import digit_pngs
    from models.data import load_mnist

    device = torch.device(run.device)
    weights = run.work / "weights"
    weights.mkdir(exist_ok=True)
    served = (*(COMMITTED if run.mode == "full" else COMMITTED[1:]), NET_224)
    for name in served[:-1]:
        shutil.copy(ROOT / "weights" / f"{name}.safetensors", weights)
    out: dict[str, Any] = {"dtype": "float32", "trained": {NET_224: _train_224(run, weights)}}
    limit = 200 if run.dry else None if run.mode == "full" else 2000
    test = load_mnist(run.data_dir, train=False, download=False).head(limit)
    labels = test.labels.numpy()
    pngs = digit_pngs(test.images[:, 0].numpy())
    idle_mib = memory_used_mib(device)  # after this process's own context exists
    before = context_pids(device)
    port = free_port()
    env = {
        "WEIGHTS_DIR": str(weights),
        "DEVICE": run.device,
        "ENGINE": "shared",
        "MODELS": ",".join(served),
        "DTYPE": "float32",
        "MAX_BATCH_SIZE": "256",
    }
    if run.dry:
        env["WORKERS"] = "1"
    log = run.work / "service.log"
    started = time.perf_counter()
    server = start_server(
        "service", service_command(port), env, "/health/ready", port=port, log=log
    )
    out |= {"start_to_ready_s": time.perf_counter() - started, "images": len(labels)}
    out["models"] = {}
    try:
        for model in served:
            started = time.perf_counter()
            got = np.array(_post_all(server.url, model, pngs))
            seconds = time.perf_counter() - started
            confusion = np.zeros((10, 10), int)
            np.add.at(confusion, (labels, got), 1)
            cli = _evaluation_cli(run, model, len(labels), weights / f"{model}.safetensors")
            correct = int((got == labels).sum())
            cli_correct = int(np.trace(cli["confusion_matrix"]))
            out["models"][model] = {
                "accuracy": correct / len(labels),
                "evaluation_cli_accuracy": cli["accuracy"],
                "equal_to_evaluation_cli": confusion.tolist() == cli["confusion_matrix"],
                "mismatch": accuracy_mismatch(len(labels), correct, cli_correct),
                "images_s": len(labels) / seconds,
            }
        after, held = context_pids(device), memory_used_mib(device)
    finally:
        server.stop()
    out["service_contexts"] = None if not after else len(set(after) - set(before or []))
    out["service_gpu_mib"] = None if held is None or idle_mib is None else held - idle_mib
    return out


def warmup(run: Run) -> dict[str, Any]:
    """After start-up, per model and batch size: the first call against the second, in ms."""
    import torch

    from app.config import Settings
    from app.engine.host import ModelHost
    from app.metrics import Metrics
    from benchmarks.serve_gpu import dummy_checkpoint

    names = ("lenet",) if run.dry else ("mnist_cnn", "alexnet", "vgg16")
    weights = run.work / "weights"
    for name in names:
        dummy_checkpoint(name, weights)  # random weights: the timing is the same
    settings = Settings(
        weights_dir=weights, models=names, device=run.device, max_batch_size=16 if run.dry else 256
    )

    async def measure() -> dict[str, Any]:
        host = await ModelHost.start(settings, Metrics(), torch_threads=1)
        out: dict[str, Any] = {}
        try:
            for (name, version), hosted in host.hosted.items():
                calls = {}
                for n in hosted.predictor.sizes:
                    digits = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
                    times = []
                    for _ in range(2):
                        started = time.perf_counter()
                        await host.enqueue(name, version, digits)
                        times.append(1000 * (time.perf_counter() - started))
                    calls[n] = {"first_ms": times[0], "second_ms": times[1]}
                out[name] = calls
        finally:
            await host.stop()
        return out

    per_model = asyncio.run(measure())
    spikes = [
        f"{name} at {n}: {t['first_ms']:.1f} ms, then {t['second_ms']:.1f}"
        for name, calls in per_model.items()
        for n, t in calls.items()
        if t["first_ms"] > 2 * t["second_ms"] + 2
    ]
    return {"models": per_model, "spikes": spikes, "pass": not spikes}


def serve_bench(run: Run) -> dict[str, Any]:
    """``serve_bench --gpu``: alexnet and vgg16 against their bare best (quick: one short round
    of the shared layout each; full: both layouts, two rounds). Its JSON is written after
    each model, so what was measured survives a timeout (gpu_check keeps it)."""
    from benchmarks import serve_bench as bench

    result = run.work / "serve_bench.partial.json"
    layouts = "shared,worker" if run.mode == "full" else "shared"
    if run.dry:
        sizes = ["--gpu-models", "lenet", "--rounds", "1", "--duration", "1", "--warmup", "1"]
        sizes += ["--gpu-worker-copies", "1", "--gpu-connections", "4"]
        sizes += ["--server-env", "WORKERS=1"]
    elif run.mode == "full":
        sizes = ["--gpu-models", "alexnet,vgg16", "--rounds", "2", "--duration", "4"]
        sizes += ["--warmup", "1"]
    else:
        sizes = ["--gpu-models", "alexnet,vgg16", "--rounds", "1", "--duration", "2"]
        sizes += ["--warmup", "1"]
    command = ["--gpu", "--gpu-device", run.device, "--gpu-layouts", layouts]
    bench.main([*command, "--json", str(result), *sizes])
    return serve_bench_figures(json.loads(result.read_text()))


def serve_bench_figures(data: dict[str, Any]) -> dict[str, Any]:
    """What the GPU check keeps of serve_bench's JSON (whole, or as far as it got)."""
    keep = ("images_s", "percent_of_bare", "p50_ms", "p99_ms", "gpu_mib", "contexts", "errors")
    return {
        "device": data["device"],
        "dtype": data["dtype"],
        "models": {
            r["model"]: {
                "bare_best_images_s": r["bare_best_images_s"],
                "bare_best_batch": r["bare_sweep"]["best_batch"],
                "target_fraction": r["target_fraction"],
                "pass": r["pass"],
                "layouts": {k: {f: v[f] for f in keep} for k, v in r["layouts"].items()},
            }
            for r in data["gpu"]
        },
    }


def training(run: Run) -> dict[str, Any]:
    """mnist_cnn through the training CLI, AMP where the GPU has bf16: full mode, its default
    recipe and the time to 99.5%; quick mode, three epochs (the time per epoch)."""
    from benchmarks.train_speed import time_to_accuracy

    extra = ["--device", run.device]
    if run.dry:
        extra += ["--epochs", "1", "--limit-train", "256", "--limit-test", "128"]
    elif run.mode != "full":
        extra += ["--epochs", "3"]
    with tempfile.TemporaryDirectory() as out:
        return time_to_accuracy("mnist_cnn", run.data_dir, Path(out), *extra)


SECTIONS = {
    "environment": environment,
    "cuda_tests": cuda_tests,
    "service_http": service_http,
    "warmup": warmup,
    "serve_bench": serve_bench,
    "training": training,
}
