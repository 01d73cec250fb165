"""Serving benchmark: the batched service against a naive per-request endpoint, in one run.

    python -m benchmarks.serve_bench --duration 8 --rounds 3 --json serve_bench.json
    python -m benchmarks.serve_bench --gpu --device cuda   # alexnet, vgg16: service vs bare model

Both servers are uvicorn processes with the same flags (one worker). The load comes from a
separate process (``python -m benchmarks.serve_load ...``: closed-loop clients on keep-alive
connections, a minimal HTTP/1.1 client unless ``--client httpx``) that sends prebuilt
multipart bodies of MNIST test digits, checks every answer and prints its numbers as JSON,
including the CPU time the server and the client spent per image. Scenarios run against both
servers in turn, the order alternating by round; the table shows medians of rounds.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.serve_harness import (
    NOTE,
    ROOT,
    UVICORN_FLAGS,
    Scenario,
    Server,
    extra_env,
    run_load,
    start_server,
)
from benchmarks.serve_load import CONTENT_TYPE, multipart_bodies, write_payloads

MEDIANS = (
    "req_s",
    "images_s",
    "p50_ms",
    "p99_ms",
    "server_cpu_ms_per_image",
    "client_cpu_ms_per_image",
)


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of rounds for rates, latencies and CPU; errors summed; the worst accuracy."""
    accs = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    errors = [r["first_error"] for r in rows if r["first_error"]]
    return {
        **{k: statistics.median(r[k] for r in rows) for k in MEDIANS},
        "errors": sum(r["errors"] for r in rows),
        "rounds": len(rows),
        "accuracy": min(accs) if accs else None,
        "first_error": errors[0] if errors else None,
    }


def agreement(servers: list[Server], path: str, payloads: Path) -> dict[str, Any]:
    """Every payload digit through each server (64 per request): accuracy, and ours vs naive."""
    answers = {}
    for server in servers:
        answers[server.name] = [
            p
            for body, _ in multipart_bodies(payloads, 64)
            for p in httpx.post(
                server.url + path, content=body, headers={"content-type": CONTENT_TYPE}, timeout=300
            )
            .raise_for_status()
            .json()["predictions"]
        ]
    labels = [str(y) for y in np.load(payloads)["labels"]]
    ours, naive = answers["ours"], answers["naive"]
    return {
        "images": len(labels),
        "accuracy": {
            k: statistics.mean(p["label"] == y for p, y in zip(v, labels, strict=True))
            for k, v in answers.items()
        },
        "same_label": statistics.mean(
            a["label"] == b["label"] for a, b in zip(ours, naive, strict=True)
        ),
        "max_probability_diff": max(
            abs(x - y)
            for a, b in zip(ours, naive, strict=True)
            for x, y in zip(a["probabilities"], b["probabilities"], strict=True)
        ),
    }


def print_table(summary: list[dict[str, Any]]) -> None:
    """One line per scenario and server."""
    print(
        f"{'scenario':<8} {'server':<6} {'conc':>4} {'img/req':>7} {'req/s':>8} "
        f"{'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'label acc':>9} "
        f"{'srv cpu ms/img':>14} {'load cpu ms/img':>15}"
    )
    for s in summary:
        acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
        print(
            f"{s['scenario']:<8} {s['server']:<6} {s['concurrency']:>4} {s['images']:>7} "
            f"{s['req_s']:>8.1f} {s['images_s']:>9.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} "
            f"{s['errors']:>6} {acc:>9} {s['server_cpu_ms_per_image']:>14.3f} "
            f"{s['client_cpu_ms_per_image']:>15.3f}"
        )
        if s["first_error"]:
            print(f"    first error: {s['first_error']}")


def judge(
    summary: list[dict[str, Any]], scenarios: list[Scenario], agree: dict[str, Any]
) -> list[dict[str, Any]]:
    """Ratios ours/naive and the issue's CPU targets (stated for lenet on a 2-core CPU)."""
    by = {(s["scenario"], s["server"]): s for s in summary}
    c1, c32, big = (sc.name for sc in scenarios)
    checks = [
        (
            f"{c32}: req/s ours/naive >= 3x",
            by[c32, "ours"]["req_s"] / by[c32, "naive"]["req_s"],
            ">=",
            3.0,
        ),
        (
            f"{c1}: p50 ours/naive <= 1.2x",
            by[c1, "ours"]["p50_ms"] / by[c1, "naive"]["p50_ms"],
            "<=",
            1.2,
        ),
        (f"{big}: images/s ours >= 10,000", by[big, "ours"]["images_s"], ">=", 10_000.0),
        (
            f"{big}: images/s ours/naive (info)",
            by[big, "ours"]["images_s"] / by[big, "naive"]["images_s"],
            "",
            0.0,
        ),
        ("no errors, both servers", float(sum(s["errors"] for s in summary)), "<=", 0.0),
        ("same labels as naive (fraction of digits)", agree["same_label"], ">=", 1.0),
    ]
    return [
        {
            "target": name,
            "value": v,
            "pass": None if not op else (v >= bound if op == ">=" else v <= bound),
        }
        for name, v, op, bound in checks
    ]


def cpu_main(args: argparse.Namespace, tmp: Path, payloads: Path) -> dict[str, Any]:
    """Both servers up at once; each scenario against each, interleaved, for ``rounds``."""
    env = {
        "WEIGHTS_DIR": str(args.weights_dir.resolve()),
        "MODELS": args.model,
        "DEVICE": args.device,
        **extra_env(args),
    }
    scenarios = [
        Scenario("c1", 1, 1),
        Scenario("c32", 32, 1),
        Scenario("batch64", args.batch_concurrency, 64),
    ]
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        servers = []
        for name, target, ready in (
            ("ours", ["app.main:app"], "/health/ready"),
            ("naive", ["--factory", "benchmarks.naive_server:create_app"], "/health"),
        ):
            servers.append(start_server(name, target, env, ready, tmp))
            stack.callback(servers[-1].stop)
        agree = agreement(servers, f"/predict/{args.model}", payloads)
        accs = ", ".join(f"{k} {v:.4f}" for k, v in agree["accuracy"].items())
        print(
            f"  {agree['images']} MNIST test digits through both: accuracy {accs}; same label "
            f"{agree['same_label']:.2%}, max |prob diff| {agree['max_probability_diff']:.2g}"
        )
        for rnd in range(args.rounds):
            for sc in scenarios:
                for server in servers if rnd % 2 == 0 else servers[::-1]:
                    r = run_load(server, f"/predict/{args.model}", payloads, sc, args)
                    rows.append({"round": rnd, "scenario": sc.name, "server": server.name, **r})
                    print(
                        f"  round {rnd + 1} {sc.name:<8} {server.name:<6} {r['req_s']:8.1f} req/s"
                        f" {r['images_s']:9.1f} img/s p50 {r['p50_ms']:7.2f} ms",
                        flush=True,
                    )
    summary = [
        {
            "scenario": sc.name,
            "server": name,
            "concurrency": sc.concurrency,
            "images": sc.images,
            **median_row([r for r in rows if r["scenario"] == sc.name and r["server"] == name]),
        }
        for sc in scenarios
        for name in ("ours", "naive")
    ]
    print(
        f"\n{args.model} on {args.device}, median of {args.rounds} rounds of {args.duration} s "
        f"(after {args.warmup} s warm-up each), {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, client {args.client}"
    )
    print_table(summary)
    targets = judge(summary, scenarios, agree)
    for t in targets:
        verdict = "" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"  {t['target']:<42} {t['value']:>10.2f}  {verdict}")
    print(NOTE)
    return {
        "rows": rows,
        "summary": summary,
        "targets": targets,
        "agreement": agree,
        "server_env": env,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, in CPU mode or (``--gpu``) GPU mode."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="DEVICE for the servers (cpu, cuda, cuda:N)")
    p.add_argument(
        "--batch-concurrency",
        type=int,
        default=4,
        help="clients in the 64-images-per-request scenario",
    )
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
        help="extra environment for our service, e.g. MAX_BATCH_DELAY_MS=1",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="GPU mode: service vs bare model for --gpu-models (see serve_gpu)",
    )
    p.add_argument("--gpu-models", default="alexnet,vgg16")
    p.add_argument("--gpu-concurrency", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="GPU mode: MAX_BATCH_SIZE")
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float16", "float32"),
        help="GPU mode: DTYPE",
    )
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load client (httpx costs the shared CPU ~30x more per request)",
    )
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    load_at_start = os.getloadavg()  # other work on the host skews every number: record it
    with tempfile.TemporaryDirectory(prefix="serve_bench-") as tmp_name:
        tmp = Path(tmp_name)
        payloads = tmp / "payloads.npz"
        real = write_payloads(payloads, args.data_dir)
        if args.gpu:
            from benchmarks.serve_gpu import gpu_main  # GPU mode only: it loads the service code

            result = gpu_main(args, tmp, payloads)
        else:
            if not real:
                raise SystemExit(f"MNIST not found under {args.data_dir}: pass --data-dir")
            result = cpu_main(args, tmp, payloads)
    if args.json:
        meta = {
            "command": [sys.executable, "-m", "benchmarks.serve_bench", *argv],
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
            "uvicorn_flags": UVICORN_FLAGS,
            "note": NOTE,
        }
        args.json.write_text(json.dumps({**meta, **result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
