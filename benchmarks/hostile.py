"""Hostile inputs against ``python -m app`` while normal traffic flows: what each one costs.

    python -m benchmarks.hostile [--cases NAME,...] [--ceiling-mb 3000] [--json FILE]

The service runs with its defaults (as ``make serve``: one worker per core, the committed
weights). wrk sends normal traffic (single-digit PNG predictions, paced: 4 connections, one
request each 25 ms), and a probe sends one more normal request every 100 ms on a fresh
connection and times each. For each case the attack is fired once, and the table reports the
service's resident memory (summed over its process tree, read from /proc) before, at the peak
and after it has settled, wrk's p99, the probe's slowest request, and the attack's own outcome.
The targets (the issue's): refused or answered within a few seconds (5 s here), peak under
+600 MB, after under +100 MB, no probe waiting a second.

A case whose memory passes ``--ceiling-mb`` over the start has the service killed there, so
that a memory bomb cannot take the host (the case is then reported as killed) and the next case
gets a fresh service. Results go to benchmarks/results/hostile.json with the commit and command.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import hostile_files
from benchmarks.harness import (
    ROOT,
    MemoryPeak,
    Server,
    free_port,
    service_command,
    start_server,
)
from benchmarks.soak import served
from benchmarks.wrk import CONTENT_TYPE, LUA, digit_pngs, multipart, wrk_command, wrk_result
from benchmarks.wrk import write_payloads as write_wrk_payloads

MB = 1024 * 1024
WITHIN_S = 5.0  # "refused or answered within a few seconds"
PEAK_MB, AFTER_MB, PROBE_S = 600.0, 100.0, 1.0  # the targets
PACE_LUA = (
    LUA
    + """
local posting_init = init
init = function(args)
  posting_init(args)
  pace_ms = tonumber(args[4])
end
delay = function() return pace_ms end
"""
)
Outcome = list[tuple[str, float]]  # (status, or what went wrong; seconds) per attacking request
Attack = Callable[[str], Coroutine[Any, Any, Outcome]]  # the service's URL -> the outcome


# ----------------------------------------------------------------------------- raw HTTP
async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length: status, headers, body."""
    status = int((await reader.readuntil(b"\r\n")).split()[1])
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    headers = dict(line.lower().split(": ", 1) for line in head.split("\r\n") if line)
    return status, headers, await reader.readexactly(int(headers["content-length"]))


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the service at ``url``."""
    u = httpx.URL(url)
    return await asyncio.open_connection(u.host, u.port)


async def stream_head(
    url: str, start: bytes, total: int, within_s: float
) -> tuple[int, bytes, float, int]:
    """Send ``start`` and then filler, as fast as the service reads it, until ``total`` bytes
    or an answer: (status, body, seconds, bytes sent). TimeoutError after ``within_s``."""
    reader, writer = await connect(url)
    started, sent = time.monotonic(), len(start)
    answered = asyncio.create_task(answer(reader))
    writer.write(start)
    filler = b"a" * 65536
    try:
        async with asyncio.timeout(within_s):
            try:
                while not answered.done() and sent < total:
                    writer.write(filler)
                    sent += len(filler)
                    await writer.drain()
                    # drain() returns at once while the socket takes everything: without this
                    # yield the reader never runs and the answer is only seen after the reset.
                    await asyncio.sleep(0)
            except ConnectionError:
                # The service answered and closed while filler was still in flight (its lingering
                # close is bounded): the answer came first, so it is in the reader's buffer.
                pass
            status, _, body = await answered
    finally:
        answered.cancel()
        writer.close()
    return status, body, time.monotonic() - started, sent


async def _timed(attack: Awaitable[Any]) -> tuple[str, float]:
    started = time.monotonic()
    try:
        result = await attack
        status = str(result[0] if isinstance(result, tuple) else result)
    except TimeoutError:
        status = "no answer"
    except (ConnectionError, asyncio.IncompleteReadError, httpx.TransportError) as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


# ----------------------------------------------------------------------------- attacks
def huge_heads(start: Callable[[int], bytes], size: int, n: int) -> Attack:
    """``n`` requests at once whose head (``start(i)``, then filler) runs to ``size`` bytes."""

    async def attack(url: str) -> Outcome:
        runs = (_timed(stream_head(url, start(i), size, within_s=90)) for i in range(n))
        return list(await asyncio.gather(*runs))

    return attack


def uploads(make: Callable[[], bytes], name: str, requests: int, per_request: int = 1) -> Attack:
    """``requests`` predictions at once, each with ``per_request`` copies of one crafted file."""
    data = make()

    async def post(client: httpx.AsyncClient) -> int:
        files = [("files", (name, data)) for _ in range(per_request)]
        return (await client.post("/predict/lenet", files=files)).status_code

    async def attack(url: str) -> Outcome:
        limits = httpx.Limits(max_connections=requests)
        async with httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as c:
            return list(await asyncio.gather(*(_timed(post(c)) for _ in range(requests))))

    return attack


async def trickling_bodies(url: str, n: int = 120, every_s: float = 1.5) -> Outcome:
    """``n`` connections each sending a body byte every ``every_s``, until answered."""
    head = b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n"
    head += b"Content-Length: 100000\r\n\r\n"

    async def trickle() -> int:
        reader, writer = await connect(url)
        writer.write(head)
        answered = asyncio.create_task(answer(reader))
        try:
            while not answered.done():
                writer.write(b"\0")
                await asyncio.wait([answered], timeout=every_s)
            return answered.result()[0]
        finally:
            answered.cancel()
            writer.close()

    async def one() -> tuple[str, float]:
        return await _timed(asyncio.wait_for(trickle(), 90))

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def nothing(url: str) -> Outcome:
    """No attack: the normal traffic alone, for the figures to compare with."""
    await asyncio.sleep(3)
    return [("none", 0.0)]


async def leaving_mid_body(url: str, n: int = 50) -> Outcome:
    """``n`` clients that send half a body and close; the status is what /metrics counted."""

    async def leave() -> None:
        _, writer = await connect(url)
        writer.write(b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n")
        writer.write(b"Content-Length: 10000\r\n\r\n" + b"\0" * 5000)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(leave() for _ in range(n)))
    took = time.monotonic() - started
    return [("left", took)] * n


def _type_head(i: int) -> bytes:
    head = "POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Length: 100\r\n"
    return (head + f"Content-Type: {CONTENT_TYPE}; pad={i}-").encode()


@dataclass(frozen=True)
class Case:
    """One attack, named as the table shows it."""

    name: str
    attack: Attack
    kind: str  # "http" or "image": the image ones wait on the decode guards


def cases() -> list[Case]:
    """Every case, in the order they run."""
    header = b"GET /health/live HTTP/1.1\r\nHost: zoo\r\nX-Big: "
    f = hostile_files
    return [
        Case("none (normal traffic alone)", nothing, "http"),
        Case("98 MB header", huge_heads(lambda i: header, 98 * MB, 1), "http"),
        Case("90 MB URL", huge_heads(lambda i: b"GET /health/live?q=", 90 * MB, 1), "http"),
        Case("4 x 16 MB headers at once", huge_heads(lambda i: header, 16 * MB, 4), "http"),
        Case("20 distinct 20 MB Content-Types", huge_heads(_type_head, 20 * MB, 20), "http"),
        Case("120 trickling bodies", trickling_bodies, "http"),
        Case("50 clients leaving mid-body", leaving_mid_body, "http"),
        Case("TIFF: 28x28, one 46336x46336 tile", uploads(f.tiff_tile_bomb, "t.tiff", 1), "image"),
        Case("4 progressive JPEGs, last scan x400",
             uploads(f.progressive_jpeg_scan_bomb, "s.jpg", 4), "image"),
        Case("28 lossless 6000x6000 WebPs (14 x 2)",
             uploads(f.lossless_webp, "flat.webp", 14, 2), "image"),
        Case("4 real 12000x12000 PNGs", uploads(f.huge_png, "huge.png", 4), "image"),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- normal traffic
class Probe:
    """One normal prediction every ``every_s`` on a fresh connection, timed, in a thread."""

    def __init__(self, url: str, body: bytes, every_s: float = 0.1) -> None:
        self.url, self.body, self.every_s = url, body, every_s
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"content-type": CONTENT_TYPE}
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                with httpx.Client(base_url=self.url, timeout=60) as c:
                    status = c.post("/predict/lenet", content=self.body, headers=headers)
                outcome = str(status.status_code)
            except httpx.TransportError as exc:
                outcome = type(exc).__name__
            self.latencies.append(time.monotonic() - sent)
            if outcome != "200":
                self.failures[outcome] = self.failures.get(outcome, 0) + 1
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - sent)))

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Traffic:
    """wrk's paced normal traffic for as long as the ``with`` block runs."""

    def __init__(self, url: str, payloads: Path, connections: int = 4, pace_ms: int = 25) -> None:
        cmd = wrk_command(url + "/predict/lenet", payloads, connections, 3600, "paced.lua")
        self.cmd = [*cmd, str(pace_ms)]
        self.result: dict[str, Any] = {}

    def __enter__(self) -> "Traffic":
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        out, err = self.proc.communicate(timeout=60)
        self.result = wrk_result(out, err)


# ----------------------------------------------------------------------------- the run
class Service:
    """``python -m app`` with its defaults, restarted after a case killed it."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.starts = folder, 0
        self.server: Server | None = None

    def up(self) -> Server:
        """The running service; a fresh one if there is none."""
        if self.server is None or self.server.proc.poll() is not None:
            if self.server is not None:
                self.server.stop()
            port = free_port()
            self.starts += 1
            log = self.folder / f"service-{self.starts}.log"
            env = {"WEIGHTS_DIR": str(ROOT / "weights"), "DEVICE": "cpu"}
            self.server = start_server(
                "service", service_command(port), env, "/health/ready", port=port, log=log
            )
        return self.server

    def kill(self, mb: float) -> None:
        """SIGKILL every process of the service (a case passed the memory ceiling)."""
        if self.server is not None:
            print(f"  memory at {mb:.0f} MB: past the ceiling, killing the service", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.proc.pid, signal.SIGKILL)

    def settle(self, server: Server, quiet_s: float = 1.0, within_s: float = 60) -> bool:
        """Wait until the service uses under a tenth of a core (decoding for a client that has
        gone can go on); whether it did within ``within_s``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and server.proc.poll() is None:
            before = server.cpu_seconds()
            time.sleep(quiet_s)
            if server.cpu_seconds() - before < 0.1 * quiet_s:
                return True
        return False


def run_case(
    case: Case, service: Service, payloads: Path, body: bytes, ceiling_mb: float
) -> dict[str, Any]:
    """Fire one attack under normal traffic; what it cost."""
    server = service.up()
    service.settle(server)
    before, counted = server.rss_mb(), served(server.url)
    limit = before + ceiling_mb
    with (
        MemoryPeak(server.proc.pid, ceiling_mb=limit, on_ceiling=service.kill) as memory,
        Traffic(server.url, payloads) as traffic,
        Probe(server.url, body) as probe,
    ):
        time.sleep(1)
        started = time.monotonic()
        outcome = asyncio.run(case.attack(server.url))
        took = time.monotonic() - started
        time.sleep(1)
    killed = memory.over
    settled = not killed and service.settle(server)
    after = server.rss_mb() if not killed else None
    if not killed:  # what the service counted, beside the normal traffic's 200s
        now = served(server.url)
        counted = {s: n - counted.get(s, 0) for s, n in now.items() if s != "200"}
        counted = {s: n for s, n in counted.items() if n}
    statuses: dict[str, int] = {}
    for status, _ in outcome:
        statuses[status] = statuses.get(status, 0) + 1
    slowest = max(s for _, s in outcome)
    result = {
        "case": case.name,
        "kind": case.kind,
        "statuses": statuses,
        "counted_by_the_service": counted if not killed else None,
        "attack_s": took,
        "slowest_attack_request_s": slowest,
        "rss_before_mb": before,
        "rss_peak_mb": memory.peak_mb,
        "rss_after_mb": after,
        "killed_at_ceiling": killed,
        "settled": settled,
        "wrk": traffic.result,
        "probe_requests": len(probe.latencies),
        "probe_max_s": max(probe.latencies, default=float("nan")),
        "probe_p99_s": _p99(probe.latencies),
        "probe_failures": probe.failures,
    }
    result["meets_targets"] = _meets(result)
    return result


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return max(values, default=float("nan"))
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _meets(r: dict[str, Any]) -> bool:
    trickle = r["case"] == "120 trickling bodies"  # cut at BODY_TIMEOUT_S (15 s) by design
    return (
        not r["killed_at_ceiling"]
        and (trickle or r["slowest_attack_request_s"] <= WITHIN_S)
        and r["rss_peak_mb"] - r["rss_before_mb"] <= PEAK_MB
        and r["rss_after_mb"] is not None
        and r["rss_after_mb"] - r["rss_before_mb"] <= AFTER_MB
        and r["probe_max_s"] < PROBE_S
    )


def table(results: list[dict[str, Any]]) -> str:
    """The results as one markdown table."""
    rows = [
        "| case | attack: statuses | service counted | slowest (s) | memory before (MB) | peak "
        "| after | wrk p99 (ms) | probe max (ms) | targets |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        statuses = ", ".join(f"{n} x {s}" for s, n in sorted(r["statuses"].items()))
        counted = r["counted_by_the_service"]
        counted = "-" if counted is None else ", ".join(f"{n:g} x {s}" for s, n in counted.items())
        peak = f"+{r['rss_peak_mb'] - r['rss_before_mb']:,.0f}"
        if r["killed_at_ceiling"]:
            peak += " (killed)"
            after = "-"
        else:
            after = f"{r['rss_after_mb'] - r['rss_before_mb']:+,.0f}"
        probe = f"{r['probe_max_s'] * 1000:,.0f}"
        if r["probe_failures"]:
            probe += " (" + ", ".join(f"{n} x {s}" for s, n in r["probe_failures"].items()) + ")"
        rows.append(
            f"| {r['case']} | {statuses} | {counted or 'none'} "
            f"| {r['slowest_attack_request_s']:.2f} | {r['rss_before_mb']:,.0f} | {peak} | {after} "
            f"| {r['wrk']['p99_ms']:,.1f} "
            f"| {probe} | {'met' if r['meets_targets'] else 'MISSED'} |"
        )
    return "\n".join(rows)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Run the cases; print the table; write the JSON; 1 if any HTTP case missed a target."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", help="comma-separated substrings of the case names to run")
    ap.add_argument("--ceiling-mb", type=float, default=3000, help="memory growth that kills")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/hostile.json")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    from models.data import load_mnist

    digits = load_mnist(args.data_dir, train=False, download=False).images[:64, 0].numpy()
    pngs = digit_pngs(digits)
    chosen = [
        c for c in cases() if not args.cases or any(w in c.name for w in args.cases.split(","))
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        payloads = write_wrk_payloads(pngs, 1, Path(tmp) / "wrk")
        (payloads / "paced.lua").write_text(PACE_LUA)
        service = Service(Path(tmp))
        try:
            for case in chosen:
                print(f"{case.name} ...", flush=True)
                results.append(
                    run_case(case, service, payloads, multipart(pngs[:1], 0), args.ceiling_mb)
                )
        finally:
            if service.server is not None:
                service.server.stop()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": " ".join(["python -m benchmarks.hostile", *(argv or sys.argv[1:])]),
        "cores": os.cpu_count(),
        "targets": {"within_s": WITHIN_S, "peak_mb": PEAK_MB, "after_mb": AFTER_MB,
                    "probe_max_s": PROBE_S},
        "service_starts": service.starts,
        "cases": results,
    }  # fmt: skip
    args.json.write_text(json.dumps(figures, indent=1) + "\n")
    missed = [r["case"] for r in results if r["kind"] == "http" and not r["meets_targets"]]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
