"""Reload under load: versions come and go while wrk keeps a model busy; no request may fail.

    python -m benchmarks.reload [--model lenet] [--cycles 30] [--connections 4]
        [--engine worker] [--workers 2] [--device cpu] [--json FILE]

On a copy of the model's checkpoint in a fresh weights folder (version 1; random weights for a
model with no committed checkpoint, e.g. ``--model vgg16 --device cuda --cycles 50``),
``python -m app`` serves while wrk sends single-digit predictions on keep-alive connections,
one in four with ``?version=1`` (its first ``--warmup`` seconds, without reloads, are the
baseline the latencies are compared with). Each cycle copies the checkpoint in as the next version,
POSTs /models/reload, checks that the version was added and is the default on every worker,
then removes the version before it (never version 1) and reloads again; every other cycle
does both in one reload, as a rolling deploy does, so the version that leaves is the one the
load was on (it must finish what it accepted, and no request may reach it after). Then a
corrupt file as version ``cycles + 10`` must leave the last good version the default,
``?version=1`` must answer and ``?version=99`` must be a 404. The resident memory of the whole
service (and on CUDA the GPU memory in use) is read once the load has warmed it, before the
first cycle, and after the last. The run fails (exit 1) on any failed request, a wrong default
or answer, or growth of 50 MB resident (100 MB of GPU memory).
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import ROOT, Server, free_port, service_command, start_server
from benchmarks.wrk import CONTENT_TYPE, digit_pngs, find_wrk, multipart

MAX_GROWTH_MB = 50
MAX_GPU_GROWTH_MB = 100
LUA = r"""
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = {["Content-Type"] = args[2]}
  default = wrk.format("POST", "/predict/" .. args[3], headers, body)
  pinned = wrk.format("POST", "/predict/" .. args[3] .. "?version=1", headers, body)
  sent = 0
  statuses = {}
end
request = function()
  sent = sent + 1
  if sent % 4 == 0 then return pinned end
  return default
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
setup = function(thread)  -- in the main state: keep the thread, to read its counts in done
  main_thread = thread
end
done = function(summary, latency, requests)
  local parts = {}
  for s, n in pairs(main_thread:get("statuses")) do
    parts[#parts + 1] = string.format('"%d":%d', s, n)
  end
  local e = summary.errors
  io.write(string.format(
    'RELOAD {"statuses":{%s},"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    table.concat(parts, ","), e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _checkpoint(model: str, folder: Path) -> Path:
    """The committed checkpoint of ``model``, or one with random weights written in ``folder``."""
    committed = ROOT / "weights" / f"{model}.safetensors"
    if committed.is_file():
        return committed
    from benchmarks.serve_gpu import dummy_checkpoint  # torch: only when it is needed

    return dummy_checkpoint(model, folder)


def _gpu_mib(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    from benchmarks.gpu_readings import memory_used_mib

    return memory_used_mib(torch.device(device))


def _load(url: str, model: str, folder: Path, connections: int) -> "subprocess.Popen[str]":
    """wrk, until interrupted: ``folder``'s body.bin to ``model``, one in four to version 1."""
    (folder / "reload.lua").write_text(LUA)
    cmd = [find_wrk(), "-t1", f"-c{connections}", "-d3600s", "--timeout", "30s"]
    cmd += ["-s", str(folder / "reload.lua"), url, "--", str(folder / "body.bin"), CONTENT_TYPE]
    return subprocess.Popen([*cmd, model], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _stop(wrk: "subprocess.Popen[str]") -> dict[str, Any]:
    """Interrupt wrk (it then prints its summary); what its script counted."""
    wrk.send_signal(signal.SIGINT)
    out, err = wrk.communicate(timeout=60)
    line = next((ln for ln in out.splitlines() if ln.startswith("RELOAD ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}\n{err}")
    return dict(json.loads(line[7:]))


def _reload(client: httpx.Client) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    r = client.post("/models/reload", timeout=600)
    r.raise_for_status()
    return r.json(), time.perf_counter() - started


def _defaults(url: str, model: str, workers: int) -> set[int | None]:
    """The default version as every worker sees it: one fresh connection each, twice over."""
    seen = set()
    for _ in range(2 * workers):
        with httpx.Client(base_url=url, timeout=30) as fresh:
            seen.add(fresh.get(f"/models/{model}").json()["default_version"])
    return seen


def cycles(
    server: Server, model: str, weights: Path, n: int, workers: int, body: bytes
) -> dict[str, Any]:
    """``n`` cycles of add-then-remove; then a corrupt version and the version checks."""
    source, folder = weights / f"{model}.safetensors", weights / model
    folder.mkdir(exist_ok=True)
    problems: list[str] = []
    add_s, remove_s = [], []
    with httpx.Client(base_url=server.url) as client:
        for version in range(2, n + 2):
            shutil.copy(source, folder / f"{version}.safetensors.tmp")
            (folder / f"{version}.safetensors.tmp").replace(folder / f"{version}.safetensors")
            old = folder / f"{version - 1}.safetensors"
            at_once = version % 2 == 1 and old.exists()  # the old default leaves in this reload
            if at_once:
                old.unlink()
            report, took = _reload(client)
            add_s.append(took)
            want = [(version, "added")] + [(version - 1, "removed")] * at_once
            if [(c["version"], c["change"]) for c in report["changes"]] != want:
                problems.append(f"cycle {version}: {report['changes']}, not {want}")
            if (seen := _defaults(server.url, model, workers)) != {version}:
                problems.append(f"cycle {version}: default versions {seen}, not {version}")
            if old.exists():
                old.unlink()
                report, took = _reload(client)
                remove_s.append(took)
                if [c["change"] for c in report["changes"]] != ["removed"]:
                    problems.append(f"cycle {version}: removed {report['changes']}")
        last, corrupt = n + 1, n + 10
        (folder / f"{corrupt}.safetensors").write_bytes(b"not a checkpoint")
        report, _ = _reload(client)
        if [(c["version"], c["change"]) for c in report["changes"]] != [(corrupt, "invalid")]:
            problems.append(f"the corrupt version: {report['changes']}")
        if (seen := _defaults(server.url, model, workers)) != {last}:
            problems.append(f"after the corrupt version: default {seen}, not {last}")
        headers = {"content-type": CONTENT_TYPE}
        for query, want in (("?version=1", 200), ("?version=99", 404), ("", 200)):
            r = client.post(f"/predict/{model}{query}", content=body, headers=headers)
            if r.status_code != want:
                problems.append(f"{query or 'default'}: {r.status_code}, not {want}")
    return {"add_s": add_s, "remove_s": remove_s, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    """Serve, load, reload; print the figures; 1 if a request failed or memory grew."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--engine", choices=("worker", "shared"), default="worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    env = {"DEVICE": args.device, "MODELS": args.model, "ENGINE": args.engine,
           "WORKERS": str(args.workers)}  # fmt: skip
    from models.data import load_mnist

    digit = load_mnist(args.data_dir, train=False, download=False).images[:1, 0].numpy()
    body = multipart(digit_pngs(digit), 0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body.bin").write_bytes(body)
        weights = Path(tmp) / "weights"
        weights.mkdir()
        made = _checkpoint(args.model, Path(tmp) / "made")
        shutil.copy(made, weights / f"{args.model}.safetensors")
        port, log = free_port(), Path(tmp) / "service.log"
        env["WEIGHTS_DIR"] = str(weights)
        server = start_server(
            "service", service_command(port), env, "/health/ready", port=port, log=log
        )
        try:
            warm = _load(
                f"{server.url}/predict/{args.model}", args.model, Path(tmp), args.connections
            )
            time.sleep(args.warmup)
            baseline = _stop(warm)  # the same load without reloads
            time.sleep(1)
            before, gpu_before = server.rss_mb(), _gpu_mib(args.device)
            wrk = _load(
                f"{server.url}/predict/{args.model}", args.model, Path(tmp), args.connections
            )
            try:
                run = cycles(server, args.model, weights, args.cycles, args.workers, body)
            finally:
                load = _stop(wrk)
            time.sleep(1)
            after, gpu_after = server.rss_mb(), _gpu_mib(args.device)
            reloads = log.read_text().count(" reload: ")
        finally:
            server.stop()
    problems = run["problems"]
    failed = sum(n for s, n in load["statuses"].items() if s != "200") + load["socket_errors"]
    if failed:
        problems.append(f"{failed} failed requests: {load}")
    growth = after - before
    if growth >= MAX_GROWTH_MB:
        problems.append(f"resident memory grew {growth:.1f} MB")
    gpu_growth = None if gpu_after is None or gpu_before is None else gpu_after - gpu_before
    if gpu_growth is not None and gpu_growth >= MAX_GPU_GROWTH_MB:
        problems.append(f"GPU memory grew {gpu_growth:.1f} MiB")
    figures = {
        "command": "python -m benchmarks.reload "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "requests": load,
        "baseline_requests": baseline,
        "failed_requests": failed,
        "add_s": run["add_s"],
        "remove_s": run["remove_s"],
        "rss_mb": {"before": before, "after": after, "growth": growth},
        "gpu_mib": {"before": gpu_before, "after": gpu_after, "growth": gpu_growth},
        "reload_log_lines": reloads,
        "problems": problems,
    }
    answered = sum(load["statuses"].values())
    adds = sorted(run["add_s"])
    p99, worst = load["p99_us"] / 1e3, load["max_us"] / 1e3
    print(f"{args.cycles} cycles ({args.engine} layout, {args.workers} workers, {args.model} on "
          f"{args.device}) under {args.connections} connections: {answered:,} requests, "
          f"{failed} failed, p99 {p99:.1f} ms ({load['p99_us'] / baseline['p99_us']:.2f}x the "
          f"load without reloads), max {worst:.1f} ms")  # fmt: skip
    gpu = f"; GPU {gpu_before:.0f} -> {gpu_after:.0f} MiB" if gpu_growth is not None else ""
    print(f"reload adding a version: median {adds[len(adds) // 2]:.3f} s, max {adds[-1]:.3f} s; "
          f"resident memory {before:.1f} -> {after:.1f} MB ({growth:+.1f} MB){gpu}")  # fmt: skip
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
