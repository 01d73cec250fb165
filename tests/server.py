"""A real uvicorn process of the service on a free loopback port, for end-to-end tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from tests.helpers import ROOT, WEIGHTS

# uvicorn re-raises the signal it caught once its graceful shutdown is done.
GRACEFUL = (0, -signal.SIGTERM)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(**env: str) -> Server:
    """uvicorn app.main:app on a free loopback port, waited on until ready."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return Server(url, proc)
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready in 60 s")


def stop_server(server: Server) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=60)
