"""The processes of ``benchmarks/serve_bench.py``: uvicorn servers under test, a load per run.

Both the CPU mode (``serve_bench``) and the GPU mode (``serve_gpu``) start servers with
``start_server`` and measure each with ``run_load``, a fresh ``benchmarks.serve_load`` process.
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# As deployed (Dockerfile), minus the access log: logging every request is not what we measure.
UVICORN_FLAGS = [
    "--workers",
    "1",
    "--timeout-graceful-shutdown",
    "30",
    "--log-level",
    "warning",
    "--no-access-log",
]
NOTE = (
    "The load process shares this host's CPU cores with the server under test, alike for both "
    "servers; the numbers are throughput of server + client together."
)


@dataclass(frozen=True)
class Scenario:
    """One load shape: concurrent clients, each sending requests of ``images`` images."""

    name: str
    concurrency: int
    images: int


def extra_env(args: argparse.Namespace) -> dict[str, str]:
    """The ``--server-env KEY=VALUE`` options as a dict."""
    return dict(kv.split("=", 1) for kv in args.server_env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A uvicorn process on a loopback port."""

    name: str
    proc: "subprocess.Popen[bytes]"
    url: str

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL if it lingers; then whatever it started, by its group."""
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # its own session: only its children
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_server(
    name: str, target: list[str], env: dict[str, str], ready: str, logdir: Path
) -> Server:
    """Start ``uvicorn <target>`` with UVICORN_FLAGS and wait until ``ready`` answers 200."""
    port = _free_port()
    with (logdir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                *target,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *UVICORN_FLAGS,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 600  # a VGG checkpoint takes a while to load and warm
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(server.url + ready, timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    tail = (logdir / f"{name}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{name} did not become ready (exit {proc.returncode}):\n{tail}")


def run_load(
    server: Server, path: str, payloads: Path, sc: Scenario, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement from a fresh load process."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.serve_load",
        "--url",
        server.url + path,
        "--payloads",
        str(payloads),
        "--concurrency",
        str(sc.concurrency),
        "--images",
        str(sc.images),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--server-pid",
        str(server.proc.pid),
        "--client",
        args.client,
    ]
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.duration + args.warmup + 300
    )
    if out.returncode != 0:
        raise RuntimeError(f"load process failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))
