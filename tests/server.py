"""The service as people run it (``python -m app``) on a free loopback port, for e2e tests."""

import signal
from pathlib import Path

from benchmarks.harness import Server, free_port, service_command, start_server
from tests.helpers import WEIGHTS

# uvicorn re-raises the signal it caught once its graceful shutdown is done.
GRACEFUL = (0, -signal.SIGTERM)

__all__ = ["GRACEFUL", "Server", "start_service", "stop_server"]


def start_service(log: Path | None = None, **env: str) -> Server:
    """``python -m app`` on the committed weights, on the CPU, waited on until ready; its output
    to ``log`` when given."""
    port = free_port()
    settings = {"WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", **env}
    return start_server(
        "service", service_command(port), settings, "/health/ready", port=port, log=log
    )


def stop_server(server: Server) -> int:
    """SIGTERM, and the exit code once it has drained."""
    return server.stop()
