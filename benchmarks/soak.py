"""Soak: tens of thousands of mixed requests through ``python -m app``; nothing lost, no leaks.

    python -m benchmarks.soak [--requests 50000] [--warmup 5000] [--json FILE]

wrk (C) sends a fixed cycle of requests on keep-alive connections: 8 single-digit PNGs, one
64-digit request and one bad request (in turn an undecodable image, a text/plain body, an
unknown model), and its Lua script counts the answers by status and the predictions in the 200s.
After a warm-up of the same mix, the resident memory, open file descriptors and processes of the
whole service (launcher and workers) are read from /proc; the soak follows; then they are read
again. The run fails if any request is unanswered or answered with the wrong status, if a
64-digit answer lacks a prediction, if memory grew 50 MB or more, or if any descriptor or
process was left behind.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    free_port,
    process_tree,
    provenance,
    rss_kb,
    service_command,
    start_server,
)
from benchmarks.wrk import CONTENT_TYPE, digit_pngs, find_wrk, multipart

ROOT = Path(__file__).resolve().parents[1]
CYCLE = 10  # requests per cycle: 8 single, 1 of 64 digits, 1 bad
BAD = (  # path, content type, body, the status it must get
    ("/predict/lenet", CONTENT_TYPE, "undecodable", 422),
    ("/predict/lenet", "text/plain", "text", 415),
    ("/predict/resnet", CONTENT_TYPE, "single", 404),
)
MAX_GROWTH_MB = 50

LUA = r"""
init = function(args)
  local function read(name)
    local f = assert(io.open(args[1] .. "/" .. name, "rb"))
    local data = f:read("*a")
    f:close()
    return data
  end
  budget = tonumber(args[2])
  single, batch = read("single.bin"), read("batch.bin")
  bad = {
    wrk.format("POST", "/predict/lenet", {["Content-Type"] = args[3]}, read("undecodable.bin")),
    wrk.format("POST", "/predict/lenet", {["Content-Type"] = "text/plain"}, "not an image"),
    wrk.format("POST", "/predict/resnet", {["Content-Type"] = args[3]}, single),
  }
  single_req = wrk.format("POST", "/predict/lenet", {["Content-Type"] = args[3]}, single)
  batch_req = wrk.format("POST", "/predict/lenet", {["Content-Type"] = args[3]}, batch)
  filler = wrk.format("GET", "/health/live")
  sent, answered, labels, fillers = 0, 0, 0, 0
  statuses = {}
end
request = function()
  if not primed then  -- wrk calls request() once per thread before connecting, and drops it
    primed = true
    return filler
  end
  if sent >= budget then  -- all sent: keep the connections busy until the last answer
    return filler
  end
  sent = sent + 1
  local k = sent % 10
  if k == 9 then return batch_req end
  if k == 0 then return bad[((sent / 10) % 3) + 1] end
  return single_req
end
response = function(status, headers, body)
  if status == 200 and not body:find('"predictions"', 1, true) then
    fillers = fillers + 1
    return
  end
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    labels = labels + select(2, body:gsub('"filename"', ""))
  end
  if answered >= budget then wrk.thread:stop() end
end
setup = function(thread)  -- in the main state: keep the thread, to read its counts in done
  main_thread = thread
end
done = function(summary, latency, requests)
  local t = main_thread
  local parts = {}
  for s, n in pairs(t:get("statuses")) do parts[#parts + 1] = string.format('"%d":%d', s, n) end
  local e = summary.errors
  io.write(string.format(
    'SOAK {"sent":%d,"answered":%d,"labels":%d,"statuses":{%s},"socket_errors":%d,' ..
    '"duration_us":%d,"p50_us":%d,"p99_us":%d}\n',
    t:get("sent"), t:get("answered"), t:get("labels"), table.concat(parts, ","),
    e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def expected(n: int) -> dict[str, Any]:
    """What ``n`` requests of the cycle must get: answers by status, and predictions."""
    statuses: dict[str, int] = {"200": 0}
    labels = 0
    for sent in range(1, n + 1):
        k = sent % CYCLE
        if k == 0:
            status = str(BAD[(sent // CYCLE) % len(BAD)][3])
            statuses[status] = statuses.get(status, 0) + 1
        else:
            statuses["200"] += 1
            labels += 64 if k == CYCLE - 1 else 1
    return {"statuses": statuses, "labels": labels}


def write_payloads(folder: Path, data_dir: Path) -> Path:
    """The bodies the Lua script reads, and the script."""
    from models.data import load_mnist

    digits = load_mnist(data_dir, train=False, download=False).images[:64, 0].numpy()
    pngs = digit_pngs(digits)
    (folder / "single.bin").write_bytes(multipart(pngs[:1], 0))
    (folder / "batch.bin").write_bytes(multipart(pngs, 0))
    (folder / "undecodable.bin").write_bytes(multipart([b"\x89PNG\r\n\x1a\n broken"], 0))
    (folder / "soak.lua").write_text(LUA)
    return folder


def footprint(pid: int) -> dict[str, float]:
    """Resident memory (MB), open descriptors and processes of ``pid`` and its descendants."""
    kb, fds, procs = 0, 0, 0
    for p in process_tree(pid):
        try:
            fds += sum(not _metrics_file(fd) for fd in Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        kb += rss_kb(p)
        procs += 1
    return {"rss_mb": kb / 1024, "fds": fds, "processes": procs}


def _metrics_file(fd: Path) -> bool:
    """Whether a descriptor is one of prometheus_client's per-process metric files: a worker
    opens its few the first time it counts a request, which may fall after the warm-up when
    the other worker took every warm-up connection; not a leak."""
    try:
        target = os.readlink(fd)
    except OSError:
        return False
    return target.endswith(".db") and "/metrics/" in target


def served(url: str) -> dict[str, int]:
    """Predict requests the service has answered so far, by status (its own /metrics)."""
    counts: dict[str, int] = {}
    for m in re.finditer(
        r'^zoo_requests_total\{model="[^"]*",status="(\d+)",version="[^"]*"\} (\S+)$',
        httpx.get(f"{url}/metrics").text,
        re.M,
    ):
        counts[m.group(1)] = counts.get(m.group(1), 0) + int(float(m.group(2)))
    return counts


def soak(url: str, payloads: Path, n: int, connections: int) -> dict[str, Any]:
    """Send ``n`` requests of the cycle with wrk; what came back, to wrk and by the service."""
    cmd = [find_wrk(), "-t1", f"-c{connections}", "-d3600s", "--timeout", "30s"]
    cmd += ["-s", str(payloads / "soak.lua"), url, "--", str(payloads), str(n), CONTENT_TYPE]
    before = served(url)
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wrk's thread stops itself after the last answer, but wrk runs out its -d: interrupt it
    # (it then prints its summary) once the service has answered every request, or gives up.
    deadline = time.monotonic() + max(300, n / 20)
    while time.monotonic() < deadline and wrk.poll() is None:
        if sum(served(url).values()) - sum(before.values()) >= n:
            break
        time.sleep(0.5)
    time.sleep(0.5)
    wrk.send_signal(signal.SIGINT)
    out, err = wrk.communicate(timeout=60)
    line = next((ln for ln in out.splitlines() if ln.startswith("SOAK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}\n{err}")
    result: dict[str, Any] = json.loads(line[5:])
    result["seconds"] = result.pop("duration_us") / 1e6
    after = served(url)
    result["served"] = {
        s: after[s] - before.get(s, 0) for s in after if after[s] > before.get(s, 0)
    }
    return result


def check(result: dict[str, Any], n: int) -> list[str]:
    """Every way the run went wrong; empty when nothing was lost or misanswered."""
    want = expected(n)
    problems = []
    if result["answered"] != n or result["socket_errors"]:
        problems.append(f"{n - result['answered']} unanswered, {result['socket_errors']} errors")
    if result["statuses"] != want["statuses"]:
        problems.append(f"statuses {result['statuses']}, expected {want['statuses']}")
    if result["served"] != want["statuses"]:
        problems.append(f"the service counted {result['served']}, expected {want['statuses']}")
    if result["labels"] != want["labels"]:
        problems.append(f"{result['labels']} predictions, expected {want['labels']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print its figures; 1 if anything was lost or leaked."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--warmup", type=int, default=5_000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--models", default="lenet")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    port = free_port()
    env = {"WEIGHTS_DIR": str(ROOT / "weights"), "DEVICE": "cpu", "MODELS": args.models}
    with tempfile.TemporaryDirectory() as tmp:
        payloads = write_payloads(Path(tmp), args.data_dir)
        log = Path(tmp) / "service.log"
        server = start_server(
            "service", service_command(port), env, "/health/ready", port=port, log=log
        )
        try:
            warm = soak(server.url, payloads, args.warmup, args.connections)
            before = footprint(server.proc.pid)
            run = soak(server.url, payloads, args.requests, args.connections)
            after = footprint(server.proc.pid)
        finally:
            server.stop()
    problems = check(warm, args.warmup) + check(run, args.requests)
    growth = after["rss_mb"] - before["rss_mb"]
    if growth >= MAX_GROWTH_MB:
        problems.append(f"resident memory grew {growth:.1f} MB")
    if after["fds"] > before["fds"] or after["processes"] != before["processes"]:
        problems.append(f"descriptors or processes left behind: {before} -> {after}")
    figures = {
        "command": "python -m benchmarks.soak " + " ".join(argv or sys.argv[1:]),
        "requests": args.requests,
        "connections": args.connections,
        "warmup": warm,
        "run": run,
        "after_warmup": before,
        "after_soak": after,
        "rss_growth_mb": growth,
        "problems": problems,
    }
    print(
        f"{run['answered']:,} of {args.requests:,} answered in {run['seconds']:.1f} s "
        f"({run['answered'] / run['seconds']:,.0f} req/s), statuses {run['statuses']}, "
        f"{run['labels']:,} predictions, p50 {run['p50_us'] / 1e3:.2f} ms, "
        f"p99 {run['p99_us'] / 1e3:.2f} ms"
    )
    print(
        f"after warm-up: {before['rss_mb']:.1f} MB resident, {before['fds']} fds, "
        f"{before['processes']} processes; after: {after['rss_mb']:.1f} MB "
        f"({growth:+.1f} MB), {after['fds']} fds, {after['processes']} processes"
    )
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    if args.json:
        made = {**provenance("benchmarks.soak"), **figures}
        args.json.write_text(json.dumps(made, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
