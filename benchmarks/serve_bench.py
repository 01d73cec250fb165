"""Serving benchmark: our service against its peers, loaded by wrk, interleaved in one run.

    python -m benchmarks.serve_bench --rounds 3 --duration 8 --json serve_bench.json
    python -m benchmarks.serve_bench --servers ours --scenarios c8x64,c8x64v2   # v2 vs /predict
    python -m benchmarks.serve_bench --gpu            # GPU host: see benchmarks/serve_gpu.py

Servers, each a real process on loopback, all started before the first measurement:

- ``ours``: ``python -m app`` with its defaults for this machine (``--server-env`` overrides);
  ``ours-worker`` and ``ours-shared`` force each layout (ENGINE), to compare them;
- ``naive-1``: the endpoint people write first (benchmarks/naive_server.py), one uvicorn worker;
- ``naive-N``: the same with as many uvicorn workers as ours has;
- ``litserve``: LitServe with batching on (benchmarks/litserve_server.py), as many API servers.

Every server first answers the same MNIST test digits (accuracy printed). Then, for each
round, each scenario runs against each server in turn, the order rotating by round, and the
table shows medians of rounds, ratios against the baselines and the issue's targets. CPU time
counts every process of a server (our workers and model owner, the baselines' workers), so
``cpu ms/img`` is the whole cost of an image. wrk shares this machine's cores with the servers,
alike for all of them.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.layout import plan, usable_cores
from benchmarks.checks import accuracy, v2_accuracy
from benchmarks.harness import (
    ROOT,
    Server,
    free_port,
    git_state,
    service_command,
    start_server,
)
from benchmarks.wrk import (
    digit_pngs,
    find_wrk,
    run_wrk,
    write_payloads,
    write_v2_payloads,
)

PAYLOAD_DIGITS = 4096


@dataclass(frozen=True)
class Scenario:
    """One load shape: ``connections`` keep-alive clients sending ``images`` per request, to
    /predict (multipart) or, ``v2``, to the v2 protocol's infer (binary tensor data in and
    out, as tritonclient sends by default; our service only)."""

    name: str
    connections: int
    images: int
    v2: bool = False

    def path(self, model: str) -> str:
        """Where its requests go."""
        return f"/v2/models/{model}/infer" if self.v2 else f"/predict/{model}"


SCENARIOS = (
    Scenario("c1", 1, 1),
    Scenario("c32", 32, 1),
    Scenario("c8x64", 8, 64),
    Scenario("c8x64v2", 8, 64, v2=True),
)
# (scenario, metric, server compared with, bound, higher is better): the CPU targets.
TARGETS = (
    ("c32", "req_s", "naive-1", 3.0, True),
    ("c32", "req_s", "naive-N", 1.5, True),
    ("c1", "p50_ms", "naive-1", 1.0, False),
    ("c8x64", "images_s", None, 12_000.0, True),
    *((s.name, "req_s", "litserve", 1.0, True) for s in SCENARIOS),
    ("c1", "p50_ms", "litserve", 1.0, False),
)
# (scenario, metric, scenario compared with, bound): ours against ours, in the same rounds.
SCENARIO_TARGETS = (("c8x64v2", "images_s", "c8x64", 0.85),)  # v2 within 15% of /predict


def load_digits(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first MNIST test digits and labels."""
    from models.data import load_mnist

    split = load_mnist(data_dir, train=False, download=False).head(PAYLOAD_DIGITS)
    return split.images[:, 0].numpy(), split.labels.numpy()


def _commands(args: argparse.Namespace, workers: int, port: int) -> dict[str, list[str]]:
    """How each server starts: ours as people run it, the baselines by their own scripts."""
    naive = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.naive_server:create_app"]
    naive += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return {
        "ours": service_command(port),
        "ours-worker": service_command(port),
        "ours-shared": service_command(port),
        "naive-1": [*naive, "--workers", "1"],
        "naive-N": [*naive, "--workers", str(workers)],
        "litserve": [
            *(sys.executable, "-m", "benchmarks.litserve_server", "--port", str(port)),
            *("--model", args.model, "--api-servers", str(workers)),
            *("--weights-dir", str(args.weights_dir.resolve()), "--device", args.device),
        ],
    }


def start_servers(
    args: argparse.Namespace, workers: int, logs: Path, stack: ExitStack
) -> list[Server]:
    """The servers of ``--servers``, each ready before the first measurement."""
    base = {"WEIGHTS_DIR": str(args.weights_dir.resolve()), "MODELS": args.model}
    ours = {**base, "DEVICE": args.device, **dict(kv.split("=", 1) for kv in args.server_env)}
    env = {
        "ours": ours,
        "ours-worker": {**ours, "ENGINE": "worker"},
        "ours-shared": {**ours, "ENGINE": "shared"},
        "naive-1": {**base, "DEVICE": args.device},
        "naive-N": {**base, "DEVICE": args.device},
        "litserve": base,
    }
    servers = []
    for name in args.servers:
        port = free_port()
        ready = "/health/ready" if name.startswith("ours") else "/health"
        command = _commands(args, workers, port)[name]
        server = start_server(name, command, env[name], ready, port=port, log=logs / f"{name}.log")
        stack.callback(server.stop)
        servers.append(server)
    return servers


def measure(
    servers: list[Server], args: argparse.Namespace, payloads: dict[int, Path]
) -> list[dict[str, Any]]:
    """Every scenario against every server, ``rounds`` times, the server order rotating."""
    rows = []
    for rnd in range(args.rounds):
        for sc in [s for s in SCENARIOS if s.name in args.scenarios]:
            order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
            url, payload = sc.path(args.model), payloads[sc.name]
            for server in [s for s in order if s.name.startswith("ours") or not sc.v2]:
                for other in servers:  # the others sleep: their idle wake-ups cost no one
                    (other.resume if other is server else other.pause)()
                run_wrk(server.url + url, payload, sc.connections, args.warmup)
                cpu0 = server.cpu_seconds()
                r = run_wrk(server.url + url, payload, sc.connections, args.duration)
                cpu = server.cpu_seconds() - cpu0
                images = r["req_s"] * r["seconds"] * sc.images
                rows.append(
                    {
                        "round": rnd,
                        "scenario": sc.name,
                        "server": server.name,
                        **r,
                        "images_s": images / r["seconds"],
                        "cpu_ms_per_image": 1e3 * cpu / max(images, 1),
                    }
                )
                print(
                    f"  round {rnd + 1} {sc.name:<6} {server.name:<9} {r['req_s']:9.1f} req/s "
                    f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms errors {r['errors']}",
                    flush=True,
                )
    for server in servers:
        server.resume()
    return rows


def summarise(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Median of rounds per scenario and server."""
    out = []
    for sc in SCENARIOS:
        for name in names:
            mine = [r for r in rows if r["scenario"] == sc.name and r["server"] == name]
            if not mine:
                continue
            out.append(
                {
                    "scenario": sc.name,
                    "server": name,
                    "connections": sc.connections,
                    "images": sc.images,
                    **{
                        k: statistics.median(r[k] for r in mine)
                        for k in ("req_s", "images_s", "p50_ms", "p99_ms", "cpu_ms_per_image")
                    },
                    "errors": sum(r["errors"] for r in mine),
                }
            )
    return out


def judge(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets, each as a measured value (a ratio or an absolute) and PASS/FAIL."""
    by = {(s["scenario"], s["server"]): s for s in summary}
    out = []
    for scenario, metric, other, bound, higher in TARGETS:
        if (scenario, "ours") not in by or (other and (scenario, other) not in by):
            continue
        value = by[scenario, "ours"][metric]
        if other:
            value /= by[scenario, other][metric]
        name = f"{scenario} {metric} ours" + (f" / {other}" if other else "")
        ok = value >= bound if higher else value <= bound
        out.append(
            {"target": f"{name} {'>=' if higher else '<='} {bound:g}", "value": value, "pass": ok}
        )
    for scenario, metric, other, bound in SCENARIO_TARGETS:
        if (scenario, "ours") in by and (other, "ours") in by:
            value = by[scenario, "ours"][metric] / by[other, "ours"][metric]
            name = f"{scenario} {metric} ours / {other} ours"
            out.append({"target": f"{name} >= {bound:g}", "value": value, "pass": value >= bound})
    errors = sum(s["errors"] for s in summary)
    out.append({"target": "no errors, any server", "value": errors, "pass": errors == 0})
    return out


def print_table(summary: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    """The medians, one line per scenario and server, with ratios to naive-1; the targets."""
    by = {(s["scenario"], s["server"]): s for s in summary}
    print(
        f"\n{'scenario':<8} {'server':<9} {'req/s':>9} {'images/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu ms/img':>10} {'errors':>6} {'req/s vs naive-1':>16}"
    )
    for s in summary:
        base = by.get((s["scenario"], "naive-1"))
        ratio = f"{s['req_s'] / base['req_s']:.2f}x" if base else "-"
        print(
            f"{s['scenario']:<8} {s['server']:<9} {s['req_s']:>9.1f} {s['images_s']:>9.0f} "
            f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['cpu_ms_per_image']:>10.3f} "
            f"{s['errors']:>6} {ratio:>16}"
        )
    print()
    for t in targets:
        print(f"  {t['target']:<42} {t['value']:>10.2f}  {'PASS' if t['pass'] else 'FAIL'}")


def cpu_main(args: argparse.Namespace) -> dict[str, Any]:
    """All servers up, accuracy checked, every scenario measured; returns the results."""
    find_wrk()
    digits, labels = load_digits(args.data_dir)
    pngs = digit_pngs(digits)
    env = {"DEVICE": args.device, **dict(kv.split("=", 1) for kv in args.server_env)}
    layout = plan(Settings(**{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        payloads = {
            sc.name: (write_v2_payloads if sc.v2 else write_payloads)(
                pngs, sc.images, Path(tmp) / sc.name
            )
            for sc in SCENARIOS
        }
        servers = start_servers(args, layout.workers, Path(tmp), stack)
        accuracies = {s.name: accuracy(s, f"/predict/{args.model}", pngs, labels) for s in servers}
        accuracies |= {
            f"{s.name} (v2)": v2_accuracy(s, args.model, pngs, labels)
            for s in servers
            if s.name.startswith("ours") and "c8x64v2" in args.scenarios
        }
        print(
            "  accuracy on 640 MNIST test digits: "
            + ", ".join(f"{k} {v:.4f}" for k, v in accuracies.items())
        )
        rows = measure(servers, args, payloads)
    summary = summarise(rows, [s.name for s in servers])
    targets = judge(summary)
    print(
        f"\n{args.model} on {args.device}, {usable_cores()} cores, ours: {layout.workers} "
        f"worker(s), engine {layout.engine}, {layout.torch_threads} torch thread(s); median of "
        f"{args.rounds} rounds of {args.duration} s (after {args.warmup} s warm-up each); load "
        f"average {os.getloadavg()[0]:.2f}"
    )
    print_table(summary, targets)
    return {
        **git_state(),
        "layout": layout.__dict__,
        "cores": usable_cores(),
        "accuracy": accuracies,
        "rows": rows,
        "summary": summary,
        "targets": targets,
        "command": " ".join(["python -m benchmarks.serve_bench", *sys.argv[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark in CPU mode or (``--gpu``) GPU mode and write its JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet")
    p.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    p.add_argument("--warmup", type=int, default=2, help="seconds of load before each")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--servers", default="ours,naive-1,naive-N,litserve")
    p.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    p.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data")),
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="settings for our service, e.g. ENGINE=shared or WORKERS=4",
    )
    p.add_argument("--gpu", action="store_true", help="GPU mode (benchmarks/serve_gpu.py)")
    p.add_argument("--gpu-models", default="alexnet,vgg16")
    p.add_argument("--gpu-device", default="cuda")
    p.add_argument("--gpu-connections", type=int, default=32, help="GPU mode: wrk connections")
    p.add_argument("--batch-size", type=int, default=256, help="GPU mode: MAX_BATCH_SIZE")
    p.add_argument("--dtype", default="auto", help="GPU mode: DTYPE")
    p.add_argument(
        "--gpu-worker-copies",
        type=int,
        default=4,
        help="GPU mode: WORKERS in the worker layout, each with a model copy on the GPU",
    )
    p.add_argument("--json", type=Path, help="write every measurement here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.servers = args.servers.split(",")
    args.scenarios = args.scenarios.split(",")
    if args.gpu:
        from benchmarks.serve_gpu import gpu_main

        result = gpu_main(args)
    else:
        result = cpu_main(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
