"""Serving benchmark: our service against its peers, loaded by wrk, interleaved in one run.

    python -m benchmarks.serve_bench --rounds 3 --duration 8 --json serve_bench.json
    python -m benchmarks.serve_bench --servers ours --scenarios c8x64,c8x64v2   # v2 vs /predict
    python -m benchmarks.serve_bench --gpu            # GPU host: see benchmarks/serve_gpu.py

Servers, each a real process on loopback, running only while it is measured:

- ``ours``: ``python -m app`` with its defaults for this machine (``--server-env`` overrides);
  ``ours-worker`` and ``ours-shared`` force each layout (ENGINE), to compare them;
- ``naive-1``: the endpoint people write first (benchmarks/naive_server.py), one uvicorn worker;
- ``naive-N``: the same with as many uvicorn workers as ours has;
- ``litserve``: LitServe (benchmarks/litserve_server.py) with as many API servers and inference
  workers as ours has workers, and ours' torch threads in each; batching on (64 requests, 2 ms)
  except at one connection, where nothing can batch and it runs unbatched (max_batch_size 1).

In each round each server in turn (the order rotating by round) is started, answers the same
MNIST test digits on its first start (accuracy printed), is measured on every scenario and is
stopped, its whole process tree gone, before the next starts: no idle server shares the cores
with the one measured. LitServe starts twice a round, batched and unbatched. After the first
warm-up of each start, every process of the server is listed with its role, RSS and PSS. The
table shows medians of rounds, ratios against the baselines and the issue's targets. CPU time
counts every process of a server (our workers and model owner, the baselines' workers), so
``cpu ms/img`` is the whole cost of an image. wrk shares this machine's cores with the servers,
alike for all of them. The JSON names the commit and the command.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.layout import Layout, plan, usable_cores
from benchmarks.checks import accuracy, v2_accuracy
from benchmarks.harness import ROOT, Server, git_state
from benchmarks.process_memory import print_memory, report, sample
from benchmarks.serve_servers import SCENARIOS, Start, plan_starts, running
from benchmarks.wrk import (
    digit_pngs,
    find_wrk,
    run_wrk,
    write_payloads,
    write_v2_payloads,
)

PAYLOAD_DIGITS = 4096
# (scenario, metric, server compared with, bound, higher is better): the CPU targets.
TARGETS = (  # the serving bars of issue 24 (2 cores, wrk)
    ("c32", "req_s", "naive-1", 3.5, True),
    ("c32", "req_s", "naive-N", 2.0, True),
    ("c1", "p50_ms", "naive-1", 1.0, False),
    ("c8x64", "images_s", None, 15_000.0, True),
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


def check(
    server: Server, start: Start, args: argparse.Namespace, pngs: list[bytes], labels: np.ndarray
) -> dict[str, float]:
    """Accuracy on the check digits, by /predict and (ours, when measured) by v2."""
    out = {start.label: accuracy(server, f"/predict/{args.model}", pngs, labels)}
    if any(sc.v2 for sc in start.scenarios):
        out[f"{start.label} (v2)"] = v2_accuracy(server, args.model, pngs, labels)
    print(
        "  accuracy on 640 MNIST test digits: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()),
        flush=True,
    )
    return out


def measure(
    starts: list[Start],
    args: argparse.Namespace,
    layout: Layout,
    payloads: dict[str, Path],
    check_digits: tuple[list[bytes], np.ndarray],
    logs: Path,
) -> dict[str, Any]:
    """Every start, ``rounds`` times, the order rotating: started, checked (first time only),
    measured on each of its scenarios, its memory read after the first warm-up, stopped."""
    rows: list[dict[str, Any]] = []
    accuracies: dict[str, float] = {}
    memory: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        k = rnd % len(starts)
        for start in starts[k:] + starts[:k]:
            with running(start, args, layout, logs) as (server, port):
                if start.label not in accuracies:
                    accuracies |= check(server, start, args, *check_digits)
                for i, sc in enumerate(start.scenarios):
                    url, payload = server.url + sc.path(args.model), payloads[sc.name]
                    run_wrk(url, payload, sc.connections, args.warmup)
                    if i == 0:
                        memory.setdefault(start.label, []).append(
                            {"round": rnd, **report(sample(server.proc.pid, port))}
                        )
                    cpu0 = server.cpu_seconds()
                    r = run_wrk(url, payload, sc.connections, args.duration)
                    cpu = server.cpu_seconds() - cpu0
                    images = r["req_s"] * r["seconds"] * sc.images
                    rows.append(
                        {
                            "round": rnd,
                            "scenario": sc.name,
                            "server": start.server,
                            "start": start.label,
                            **r,
                            "images_s": images / r["seconds"],
                            "cpu_ms_per_image": 1e3 * cpu / max(images, 1),
                        }
                    )
                    print(
                        f"  round {rnd + 1} {sc.name:<7} {start.label:<18} {r['req_s']:9.1f} req/s "
                        f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms errors {r['errors']}",
                        flush=True,
                    )
    return {"rows": rows, "accuracy": accuracies, "memory": memory}


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
        f"\n{'scenario':<8} {'server':<11} {'req/s':>9} {'images/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'cpu ms/img':>10} {'errors':>6} {'req/s vs naive-1':>16}"
    )
    for s in summary:
        base = by.get((s["scenario"], "naive-1"))
        ratio = f"{s['req_s'] / base['req_s']:.2f}x" if base else "-"
        print(
            f"{s['scenario']:<8} {s['server']:<11} {s['req_s']:>9.1f} {s['images_s']:>9.0f} "
            f"{s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['cpu_ms_per_image']:>10.3f} "
            f"{s['errors']:>6} {ratio:>16}"
        )
    print()
    for t in targets:
        print(f"  {t['target']:<42} {t['value']:>10.2f}  {'PASS' if t['pass'] else 'FAIL'}")


def cpu_main(args: argparse.Namespace) -> dict[str, Any]:
    """Each server in turn started, checked, measured on every scenario and stopped, for every
    round; returns the results."""
    find_wrk()
    digits, labels = load_digits(args.data_dir)
    pngs = digit_pngs(digits)
    env = {"DEVICE": args.device, **dict(kv.split("=", 1) for kv in args.server_env)}
    layout = plan(Settings(**{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]
    starts = plan_starts(args.servers, args.scenarios)
    with tempfile.TemporaryDirectory() as tmp:
        payloads = {
            sc.name: (write_v2_payloads if sc.v2 else write_payloads)(
                pngs, sc.images, Path(tmp) / sc.name
            )
            for sc in SCENARIOS
        }
        measured = measure(starts, args, layout, payloads, (pngs, labels), Path(tmp))
    summary = summarise(measured["rows"], args.servers)
    targets = judge(summary)
    print(
        f"\n{args.model} on {args.device}, {usable_cores()} cores, ours: {layout.workers} "
        f"worker(s), engine {layout.engine}, {layout.torch_threads} torch thread(s); median of "
        f"{args.rounds} rounds of {args.duration} s (after {args.warmup} s warm-up each); load "
        f"average {os.getloadavg()[0]:.2f}"
    )
    print_table(summary, targets)
    print_memory({label: samples[-1] for label, samples in measured["memory"].items()})
    print(f"  (MB, after the first warm-up of round {args.rounds}; every round's in the JSON)")
    return {
        "layout": layout.__dict__,
        "cores": usable_cores(),
        **measured,
        "summary": summary,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark in CPU mode or (``--gpu``) GPU mode and write its JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet")
    p.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    p.add_argument("--warmup", type=int, default=2, help="seconds of load before each")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--servers", default="ours,ours-shared,naive-1,naive-N,litserve")
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
    p.add_argument("--gpu-layouts", default="shared,worker", help="GPU mode: layouts measured")
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
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "benchmarks.serve_bench", *given])

    def write(result: dict[str, Any]) -> None:
        if args.json:
            args.json.write_text(
                json.dumps({**git_state(), "command": command, **result}, indent=1)
            )

    if args.gpu:
        from benchmarks.serve_gpu import gpu_main

        result = gpu_main(args, on_result=write)
    else:
        result = cpu_main(args)
    write(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
